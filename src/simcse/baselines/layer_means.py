"""One forward pass of an encoder shared by every row of the baseline table that pools its hidden layers.

The encoder's own ``cls_before_pooler`` / ``avg`` / ``avg_first_last`` / ``avg_first_last_emb`` poolers,
BERT-flow's last-two-layer input and WhiteningBERT's layer combinations all read the same forward pass: each
is the first token of the last layer or an average of per-layer token means (the mean over tokens is linear,
so the token mean of a layer average is the average of the layers' token means). :class:`LayerMeans` runs the
encoder once over the sentences it is asked for, keeps the token mean of each needed layer and the last
layer's first token, and hands out :class:`View` objects: encoders for the evaluator that read those
stored vectors instead of running the model again. Eleven encoder rows then cost one pass instead of eleven.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from simcse.modeling.sentence_encoder import SentenceEncoder

FIRST_TOKEN = "first"  # the last layer's first token ([CLS]): cls_before_pooler


class LayerMeans:
    """Per-layer token means (and the last layer's first token) of ``source``'s hidden states, computed once
    per sentence in ``dtype`` (None: fp32) and stored in float32."""

    def __init__(
        self,
        source: str | None,
        layer_specs: Sequence[str],
        batch_size: int = 128,
        precision: str | None = None,
    ):
        """``layer_specs`` as WhiteningBERT's rows name them (``L``, ``1+L``, ``L-1+L``; L the last layer);
        ``precision`` auto | fp32 | bf16 | fp16 (None: auto), its choice and reason in :attr:`precision_line`."""
        from simcse.core.runtime import encoding_dtype
        from simcse.modeling.encoder import Encoder

        self.encoder = Encoder.load(source, "avg")
        self.top = self.encoder.num_layers
        layer_specs = [s for s in layer_specs if s != FIRST_TOKEN]  # the first token is always kept
        self.layers = tuple(sorted({self.top}.union(*(self.resolve(s) for s in layer_specs))))
        self.encoder._layers = self.layers  # the hidden states its forward computes
        self.dtype, self.precision_line = encoding_dtype(precision, self.encoder.device)
        self.batch_size = batch_size
        self.source = self.encoder.source
        self.index: dict[str, int] = {}
        self.means = np.zeros((len(self.layers), 0, self.encoder.dim), np.float32)
        self.first = np.zeros((0, self.encoder.dim), np.float32)
        self._fingerprint: str | None = None

    def resolve(self, spec: str) -> tuple[int, ...] | str:
        """``1+L`` -> (1, top); :data:`FIRST_TOKEN` as is."""
        from simcse.baselines.layers import parse_layers, resolve_layers

        return spec if spec == FIRST_TOKEN else resolve_layers(parse_layers(spec), self.top)

    def fingerprint(self) -> str:
        """The encoder's weights fingerprint, computed once."""
        if self._fingerprint is None:
            self._fingerprint = self.encoder.fingerprint()
        return self._fingerprint

    @torch.inference_mode()
    def cover(self, sentences: Sequence[str]) -> None:
        """Run the encoder over those of ``sentences`` not seen yet."""
        from simcse.modeling.pooling import masked_mean

        new = [s for s in dict.fromkeys(sentences) if s not in self.index]
        if not new:
            return
        model = self.encoder
        if self.dtype is not None and self.dtype != torch.float32:
            model = self.encoder.in_dtype(self.dtype) or self.encoder  # None: the bf16 guard kept fp32
        model.eval()
        tokens = self.encoder.tokenize(new)
        means = np.zeros((len(self.layers), len(new), self.encoder.dim), np.float32)
        first = np.zeros((len(new), self.encoder.dim), np.float32)
        device = model.device
        for idx, batch in self.encoder.iter_batches(tokens, self.batch_size):
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            hidden = model.hidden_states(ids, mask)
            for k, layer in enumerate(self.layers):
                means[k, idx] = masked_mean(hidden[layer].float(), mask).cpu().numpy()
            first[idx] = hidden[self.top][:, 0].float().cpu().numpy()
        offset = self.means.shape[1]
        self.index.update((s, offset + i) for i, s in enumerate(new))
        self.means = np.concatenate([self.means, means], axis=1)
        self.first = np.concatenate([self.first, first])

    def rows(self, sentences: Sequence[str]) -> list[int]:
        """The stored rows of ``sentences``, running the encoder first over those not seen yet."""
        self.cover(sentences)
        return [self.index[s] for s in sentences]

    def view(
        self,
        spec: str,
        source: str,
        pooler: str,
        fit_postprocess: Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]] | None = None,
        tag: str = "",
    ) -> View:
        """An encoder reading the stored vectors: the layers of ``spec`` (``1+L``) averaged, or
        :data:`FIRST_TOKEN`."""
        layers = self.resolve(spec)
        if layers != FIRST_TOKEN:
            missing = set(layers) - set(self.layers)
            if missing:
                raise ValueError(f"layers {sorted(missing)} were not computed (have {self.layers})")
        return View(self, layers, source, pooler, fit_postprocess, tag)


class View(SentenceEncoder):
    """An encoder for the evaluator (``encode``, ``fingerprint``, ``source``, ``pooler``) over a
    :class:`LayerMeans`; with ``fit_postprocess`` (BERT-flow) also ``raw``, fitted per task by the evaluator."""

    def __init__(
        self,
        means: LayerMeans,
        layers: Sequence[int] | str,
        source: str,
        pooler: str,
        fit_postprocess=None,
        tag: str = "",
    ):
        self.means, self.layers, self.source, self.pooler, self.tag = means, layers, source, pooler, tag
        self.dim = means.encoder.dim
        if fit_postprocess is not None:
            self.fit_postprocess = fit_postprocess

    def raw(self, sentences: Sequence[str], **_) -> np.ndarray:
        """The stored vectors of ``sentences``: the mean of this view's layers' token means, or the first
        token."""
        rows = self.means.rows(list(sentences))
        if self.layers == FIRST_TOKEN:
            return self.means.first[rows]
        picked = [self.means.layers.index(layer) for layer in self.layers]
        return self.means.means[np.ix_(picked, rows)].mean(0)  # one gather: these layers at these rows

    def encode(self, sentences: Sequence[str], **_) -> np.ndarray:
        """The stored vectors of ``sentences``, post-processed by ``fit_postprocess`` fitted on them when
        there is one."""
        x = self.raw(sentences)
        fit = self.fit_postprocess
        return fit(x)(x) if fit is not None else x

    def fingerprint(self) -> str:
        """The shared encoder's fingerprint with this view's layers and tag."""
        what = "first" if self.layers == FIRST_TOKEN else "+".join(map(str, self.layers))
        return f"{self.means.fingerprint()}-shared-{what}{self.tag}"
