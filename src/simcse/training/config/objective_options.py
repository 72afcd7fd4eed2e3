"""The contrastive objective every run trains with: supervision, temperature, what the positive is, the
dropout masks of the views, one encoder or two, the similarity, the hard negatives' weight, and how the
gradient is scaled over several processes. The family's methods add their own options (training/methods/)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from simcse.core.options import must_be_positive, option

GROUP = "objective"
OBJECTIVES = ("auto", "unsup", "sup")
# the positive of unsup rows, and the window of following rows it is drawn from (0: the sentence itself)
POSITIVE_WINDOWS = {"self": 0, "next_sentence": 1, "next_3_sentences": 3}
POSITIVES = tuple(POSITIVE_WINDOWS)
DROPOUT_MASKS = ("independent", "shared")
ENCODERS = ("shared", "two")
SIMILARITIES = ("cosine", "dot")
DDP_GRADIENTS = ("original", "global")


@dataclass
class ObjectiveOptions:
    """The objective group of :class:`~simcse.training.config.TrainConfig`; each field's help line documents
    it."""

    objective: str = option(
        "auto", "auto (from the number of columns) | unsup | sup", GROUP, choices=OBJECTIVES
    )
    temperature: float = option(0.05, "tau: logits are similarity / tau", GROUP)
    positive: str = option(
        "self",
        "unsup: self (the sentence again: SimCSE) | next_sentence | next_3_sentences (one of the next three, "
        "chosen per row): the paper's Table 2 objectives; consecutive lines of the file are neighbours",
        GROUP,
        choices=POSITIVES,
    )
    dropout_mask: str = option(
        "independent",
        "unsup: independent (a mask per view: the positive pair) | shared: both views under the same mask, the "
        "paper's 'fixed 0.1' (a sentence is then encoded once and its embedding is both views: the same computation)",
        GROUP,
        choices=DROPOUT_MASKS,
    )
    encoders: str = option(
        "shared",
        "shared: one encoder for every view (SimCSE) | two: the positive view (and hard negatives) go through a "
        "second, independent copy of the pretrained encoder: the paper's Table 2 'two encoders'; the first is saved",
        GROUP,
        choices=ENCODERS,
    )
    similarity: str = option(
        "cosine",
        "cosine (the paper's) | dot: the dot product of the unnormalised embeddings",
        GROUP,
        choices=SIMILARITIES,
    )
    hard_negative_weight: float = option(
        1.0, "alpha, multiplies exp(sim) of each anchor's own hard negative", GROUP
    )
    ddp_gradient: str = option(
        "original",
        "several processes: original = the gradient of the loss over the whole batch divided by the number "
        "of processes, as the original code's DDP gives (so max_grad_norm clips as in the paper's multi-GPU "
        "runs) | global = that gradient undivided, as one process gives, whatever the number of processes",
        GROUP,
        choices=DDP_GRADIENTS,
    )


def problems(c: Any) -> list[str]:
    """``c``: the whole TrainConfig (the positive is checked against augment)."""
    found = must_be_positive(c, "temperature")
    if not (c.hard_negative_weight >= 0 and math.isfinite(c.hard_negative_weight)):
        found.append(f"hard_negative_weight must be a finite number >= 0, got {c.hard_negative_weight}")
    if c.positive != "self" and (c.objective == "sup" or c.augment or c.dropout_mask == "shared"):
        found.append(
            f"positive {c.positive} replaces unsup's positive; it does not combine with sup training, "
            "augment or dropout_mask shared"
        )
    if c.dropout_mask == "shared" and (c.objective == "sup" or c.augment):
        found.append(
            "dropout_mask shared is for unsup training without augment (the views must be the same sentence)"
        )
    if c.encoders == "two" and c.dropout_mask == "shared":
        found.append(
            "encoders two encodes the views apart; dropout_mask shared encodes a sentence once for both"
        )
    if c.objective == "unsup" and c.hard_negative_weight != 1.0:
        found.append("hard_negative_weight applies to sup training with a hard-negative column")
    return found
