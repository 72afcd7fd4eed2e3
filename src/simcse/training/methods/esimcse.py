"""ESimCSE (Wu et al. 2022): word repetition changes the positive's length without changing its words, and a
momentum-encoded queue of earlier anchors adds negatives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simcse.core.errors import DataError
from simcse.core.options import must_be_in_unit_interval, must_be_non_negative, option
from simcse.training.methods.base import CollatePiece, Context, Method, Negatives

GROUP = "ESimCSE (Wu et al. 2022)"


@dataclass
class ESimCSEOptions:
    """ESimCSE's options; each field's help line documents it."""

    word_repetition: float = option(
        0.0,
        "ESimCSE: the positive view repeats random subwords: up to max(2, int(RATE * length)) of them (the "
        "paper's rule; its 0.32); 0 = off (unsup)",
        GROUP,
    )
    queue_size: int = option(
        0,
        "ESimCSE: > 0 keeps the last N anchors, encoded by a momentum copy of the encoder without dropout, "
        "as extra negatives (the paper: 2.5 x batch_size)",
        GROUP,
    )
    queue_momentum: float = option(0.995, "ESimCSE: the momentum copy's EMA factor m", GROUP)


def repeat_subwords(ids: Sequence[int], rate: float, rng: Any, special: frozenset[int]) -> list[int]:
    """ESimCSE's word repetition on a tokenised sentence (``word_repetition``): of its N non-special subwords,
    dup_len, drawn uniformly from [0, max(2, int(rate * N))], distinct ones chosen uniformly are each
    written twice in place, changing the length without changing the words. The ESimCSE code draws from
    [0, min(10, int(rate * L))) with L counting [CLS] and [SEP]; this is the paper's rule. Special tokens are
    never repeated; the result may be up to dup_len tokens longer than the truncation length. ``rng``: a
    NumPy ``Generator``."""
    positions = [i for i, token in enumerate(ids) if token not in special]
    if not positions:
        return list(ids)
    count = min(int(rng.integers(0, max(2, int(rate * len(positions))) + 1)), len(positions))
    chosen = set(rng.choice(positions, size=count, replace=False).tolist()) if count else set()
    out: list[int] = []
    for i, token in enumerate(ids):
        out.append(token)
        if i in chosen:
            out.append(token)
    return out


class WordRepetition(CollatePiece):
    """View 1 of each row with its subwords repeated, from the row's own generator (seed, epoch, row, 1), a
    stream apart from the augmentations'."""

    def __init__(self, rate: float, seed: int, special: frozenset[int]):
        self.rate, self.seed, self.special = rate, seed, special

    def views(self, per_row: list[list[list[int]]], keys: Sequence[int], epoch: int) -> None:
        """Replace view 1 of each row by :func:`repeat_subwords` of it."""
        import numpy as np

        for row, key in zip(per_row, keys):
            rng = np.random.default_rng([self.seed, epoch, int(key), 1])
            row[1] = repeat_subwords(row[1], self.rate, rng, self.special)


class ESimCSE(Method):
    """ESimCSE (``word_repetition`` or ``queue_size`` set): the positive view's subwords repeated, and a
    momentum queue of past anchors as negatives."""

    name = "esimcse"
    paper = "Wu et al. 2022, ESimCSE: Enhanced Sample Building Method for Contrastive Learning"
    Options = ESimCSEOptions

    def enabled(self, config: Any) -> bool:
        """With ``word_repetition`` or ``queue_size`` set."""
        return bool(config.word_repetition or config.queue_size)

    def problems(self, config: Any) -> list[str]:
        """The rates in [0, 1), a non-negative queue size, and word repetition only for unsup rows with
        independent masks and without compile."""
        found = must_be_in_unit_interval(config, "word_repetition")
        found += must_be_non_negative(config, "queue_size")
        if config.word_repetition and (config.objective == "sup" or config.dropout_mask == "shared"):
            found.append(
                "word_repetition changes the positive of unsup training (not sup rows, not "
                "dropout_mask shared, whose views are one pass)"
            )
        if config.word_repetition and config.compile:
            found.append("word_repetition lengthens sequences; compile needs every batch at max_seq_len")
        return found + must_be_in_unit_interval(config, "queue_momentum")

    def check_rows(self, config: Any, data: Any) -> None:
        """Word repetition needs one-sentence rows."""
        if config.word_repetition and data.columns != 1:
            raise DataError(
                data.path,
                f"word_repetition is for one-sentence (unsup) rows; this file has {data.columns} columns",
            )

    def collate_piece(self, config: Any, inputs: Any, tokenizer: Any) -> CollatePiece | None:
        """:class:`WordRepetition` with the run's seed, or None without word repetition."""
        if not config.word_repetition:
            return None
        return WordRepetition(config.word_repetition, config.seed, frozenset(tokenizer.all_special_ids))

    def negatives(self, config: Any, context: Context) -> Negatives | None:
        """With a queue: a :class:`~simcse.training.negatives.MomentumQueue` registered on the model (so
        checkpoints keep it), as a source and a hook."""
        if not config.queue_size:
            return None
        from simcse.training.negatives import MomentumQueue

        # on the model, so that checkpoints keep the copy and the queue
        context.model.momentum = MomentumQueue(
            context.model.encoder, config.queue_size, config.queue_momentum, context.views
        ).to(context.device)
        return Negatives(sources=[context.model.momentum], hooks=[context.model.momentum])


METHOD = ESimCSE()
