"""The rules between two methods of the family: a combination neither method's own checks can see."""

from __future__ import annotations

from typing import Any


def problems(config: Any) -> list[str]:
    """The problems of combining two methods: SimCSE++'s dropout-off negatives with Contrastive Tension's
    binary loss or with guide filtering."""
    found = []
    if config.negatives_without_dropout and config.loss == "binary":  # SimCSE++ and Contrastive Tension
        found.append("negatives_without_dropout is an InfoNCE variant; it does not combine with loss binary")
    if config.negatives_without_dropout and config.guide_model:  # SimCSE++ and false-negative filtering
        found.append("negatives_without_dropout builds its own negatives; guide_model filters the batch's")
    return found
