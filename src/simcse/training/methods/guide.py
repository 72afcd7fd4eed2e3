"""False-negative filtering with a guide model (as GISTEmbed, Solatorio 2024): a frozen encoder drops the
in-batch negatives it rates closer to the anchor than the anchor's own positive."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from simcse.core.errors import ConfigError
from simcse.core.options import option
from simcse.training.methods.base import CollatePiece, Context, Method, Negatives

GROUP = "false-negative filtering (as GISTEmbed, Solatorio 2024)"


@dataclass
class GuideOptions:
    """False-negative filtering's options; each field's help line documents it."""

    guide_model: str = option(
        "",
        "false-negative filtering (GISTEmbed): a model (any the toolkit loads) that drops the in-batch "
        "negatives it rates closer to the anchor than the anchor's positive; empty = off",
        GROUP,
    )
    guide_margin: float = option(
        0.0,
        "false-negative filtering: drop negatives rated above the positive's similarity minus this",
        GROUP,
    )


class GuideTokens(CollatePiece):
    """The rows' texts as the guide's tokenizer makes them (``guide_input_ids``, ``guide_attention_mask``,
    ``guide_columns``), for :class:`~simcse.training.negatives.GuideFilter`."""

    def __init__(self, tokenizer: Any, max_seq_len: int):
        self.tokenizer, self.max_seq_len = tokenizer, max_seq_len

    def tensors(self, texts: list[str], columns: int) -> dict[str, Any]:
        """The guide's padded token ids and attention mask of ``texts`` (row-major, ``columns`` per row), and
        ``columns``."""
        import torch

        from simcse.modeling.sentence_encoder import pad_batch, token_ids

        ids = token_ids(self.tokenizer, texts, self.max_seq_len)
        padded = pad_batch(ids, self.tokenizer.pad_token_id)
        return {
            "guide_input_ids": padded["input_ids"],
            "guide_attention_mask": padded["attention_mask"],
            "guide_columns": torch.tensor(columns),
        }


class Guide(Method):
    """False-negative filtering (``guide_model`` set): a frozen guide model drops in-batch negatives it rates
    closer to the anchor than the positive."""

    name = "guide"
    paper = "Solatorio 2024, GISTEmbed: Guided In-sample Selection of Training Negatives"
    Options = GuideOptions

    def enabled(self, config: Any) -> bool:
        """With a ``guide_model``."""
        return bool(config.guide_model)

    def problems(self, config: Any) -> list[str]:
        """A finite ``guide_margin``."""
        if not math.isfinite(config.guide_margin):
            return [f"guide_margin must be a finite number, got {config.guide_margin}"]
        return []

    def load_inputs(self, config: Any) -> Any:
        """The guide as an Encoder; a model that cannot be loaded is a ConfigError."""
        from simcse.core.errors import SimCSEError
        from simcse.modeling.encoder import Encoder

        try:
            return Encoder.load(config.guide_model)
        except (SimCSEError, OSError, ValueError) as e:
            raise ConfigError(f"guide_model {config.guide_model!r} cannot be loaded: {e}") from None

    def collate_piece(self, config: Any, inputs: Any, tokenizer: Any) -> CollatePiece:
        """:class:`GuideTokens` with its own copy of the guide's tokenizer (the collator runs in another
        thread)."""
        import copy

        # its own copy: the collator runs in the prefetch thread, and a fast tokenizer must not be used from
        # two threads at once
        return GuideTokens(copy.deepcopy(inputs.loaded[self.name].tokenizer), config.max_seq_len)

    def negatives(self, config: Any, context: Context) -> Negatives:
        """A :class:`~simcse.training.negatives.GuideFilter` on the run's device, as a filter and a hook."""
        from simcse.training.negatives import GuideFilter

        guide = GuideFilter(context.loaded[self.name].to(context.device), config.guide_margin)
        return Negatives(filters=[guide], hooks=[guide])


METHOD = Guide()
