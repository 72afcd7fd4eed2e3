"""WhiteningBERT's layer combinations (Huang et al. 2021): the token states of several hidden layers of an
encoder averaged, then the mean over tokens (``baseline:layers=0+1+12[:ENCODER]``; 0 is the embedding
output, the last index the last layer). With ``--whiten self`` it is their "whitened layer average"."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from simcse.core.errors import ConfigError
from simcse.modeling.sentence_encoder import SentenceEncoder, unit_rows


def parse_layers(text: str) -> tuple[str, ...]:
    """``1+12``, ``0+L``, ``L-1+L`` (L: the last layer) -> the items, resolved by :func:`resolve_layers`."""
    items = tuple(x.strip() for x in text.split("+") if x.strip())
    for item in items:
        if not re.fullmatch(r"\d+|L(-\d+)?", item):
            raise ConfigError(
                f"baseline layers={text}: give layer numbers or L / L-k joined with +, e.g. layers=1+L"
            )
    if not items:
        raise ConfigError("baseline layers= needs at least one layer, e.g. layers=1+L")
    return items


def resolve_layers(items: tuple[str, ...], top: int) -> tuple[int, ...]:
    """:func:`parse_layers`'s items as sorted distinct layer numbers, ``L`` being ``top``."""
    return tuple(sorted({top - int(i[2:] or 0) if i.startswith("L") else int(i) for i in items}))


class LayerAverage(SentenceEncoder):
    """WhiteningBERT's layer average of ``source`` (None: the embedded model) over the layers ``items`` names
    (:func:`parse_layers`), refused outside 0 to the encoder's last layer."""

    def __init__(self, items: tuple[str, ...], source: str | None):
        from simcse.modeling.encoder import Encoder

        self.encoder = Encoder.load(source, "avg")
        top = self.encoder.num_layers
        layers = resolve_layers(items, top)
        if layers[0] < 0 or layers[-1] > top:
            raise ConfigError(
                f"baseline layers={'+'.join(map(str, layers))}: {self.encoder.source} has layers 0 to {top}"
            )
        self.layers = layers
        self.encoder._layers = layers  # the hidden states its forward computes
        self.dim, self.max_length = self.encoder.dim, self.encoder.max_length
        name = "+".join(map(str, layers))
        self.source = f"baseline:layers={name}:{self.encoder.source}"
        self.pooler = f"layers={name}"

    @torch.inference_mode()
    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int = 128,
        normalize: bool = False,
        max_length: int | None = None,
        **_,
    ) -> np.ndarray:
        """The token mean of the average of the chosen layers' token states, float32 (n, dim; unit rows with
        ``normalize``), truncated at ``max_length`` (None: the encoder's); ``dtype`` and ``show_progress``
        are accepted and ignored (it encodes in the weights' precision)."""
        from simcse.modeling.pooling import masked_mean

        self.encoder.eval()
        tokens = self.encoder.tokenize(list(sentences), max_length)
        out = np.zeros((len(sentences), self.encoder.dim), dtype=np.float32)
        device = next(self.encoder.parameters()).device
        for idx, batch in self.encoder.iter_batches(tokens, batch_size):
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            hidden = self.encoder.hidden_states(ids, mask)
            states = torch.stack([hidden[i] for i in self.layers]).mean(0)
            out[idx] = masked_mean(states, mask).float().cpu().numpy()
        return unit_rows(out) if normalize else out

    def fingerprint(self) -> str:
        """The encoder's fingerprint with the layers averaged."""
        return f"{self.encoder.fingerprint()}-layers-{'+'.join(map(str, self.layers))}"
