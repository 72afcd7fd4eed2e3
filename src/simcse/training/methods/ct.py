"""Contrastive Tension (Carlsson et al. 2021): every (anchor, candidate) pair a binary decision instead of
InfoNCE's softmax over the candidates; the paper's setting pairs it with two encoders (``encoders: two``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simcse.core.options import option
from simcse.training.methods.base import Method

GROUP = "Contrastive Tension (Carlsson et al. 2021)"
LOSSES = ("infonce", "binary")


@dataclass
class CTOptions:
    """Contrastive Tension's option (``loss``); its help line documents it."""

    loss: str = option(
        "infonce",
        "infonce (SimCSE) | binary: Contrastive Tension's objective, every (anchor, candidate) pair a binary "
        "decision (sigmoid of similarity / temperature, label 1 for the positive), with encoders two",
        GROUP,
        choices=LOSSES,
    )


class ContrastiveTension(Method):
    """Contrastive Tension (``loss: binary``): the contrastive loss with a binary decision per (anchor,
    candidate) pair."""

    name = "ct"
    paper = "Carlsson et al. 2021, Semantic Re-tuning with Contrastive Tension"
    Options = CTOptions

    def enabled(self, config: Any) -> bool:
        """With ``loss: binary``."""
        return config.loss == "binary"

    def problems(self, config: Any) -> list[str]:
        """A binary loss has no denominator for ``hard_negative_weight`` to weigh."""
        if config.loss == "binary" and config.hard_negative_weight != 1.0:
            return ["hard_negative_weight weighs InfoNCE's denominator; loss binary has none"]
        return []

    def make_loss(self, config: Any, scale: float, sources: list[Any], filters: list[Any]) -> Any:
        """:class:`~simcse.training.losses.ContrastiveLoss` in its binary form, with the run's sources and
        filters."""
        from simcse.training.losses import ContrastiveLoss

        return ContrastiveLoss(
            config.temperature,
            config.hard_negative_weight,
            scale,
            config.similarity,
            sources,
            filters,
            "binary",
        )


METHOD = ContrastiveTension()
