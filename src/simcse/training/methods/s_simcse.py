"""S-SimCSE (Zhang et al. 2021): the anchors and the other views are two passes, each under a dropout rate
drawn from a range, instead of one fixed rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simcse.core.options import option
from simcse.training.methods.base import Method

GROUP = "S-SimCSE (Zhang et al. 2021)"


@dataclass
class SSimCSEOptions:
    """S-SimCSE's option; its help line documents it."""

    dropout_range: str = option(
        "",
        "S-SimCSE: LOW,HIGH: the anchors and the other views are two passes, each under a dropout rate drawn "
        "uniformly from [LOW, HIGH) (training only; the saved config keeps the checkpoint's rate)",
        GROUP,
    )


def dropout_bounds(value: str) -> tuple[float, float] | None:
    """``dropout_range`` as (LOW, HIGH), or None when unset; ValueError says what is wrong."""
    if not value:
        return None
    parts = value.split(",")
    try:
        low, high = (float(x) for x in parts)
    except ValueError:
        raise ValueError("expected LOW,HIGH, two numbers, e.g. 0.05,0.25") from None
    if not 0 <= low <= high < 1:
        raise ValueError("expected 0 <= LOW <= HIGH < 1")
    return low, high


class SampledDropout:
    """Before each training pass: every dropout layer of the encoder at a rate drawn uniformly from
    [LOW, HIGH) from the global generator (so GradCache's replay and a resume draw the same rates)."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def __call__(self, encoder: Any) -> None:
        import torch

        from simcse.modeling.dropout import set_dropout

        rate = self.low + (self.high - self.low) * float(torch.rand(()))
        set_dropout(encoder.backbone, rate, record=False)


class SSimCSE(Method):
    """S-SimCSE (``dropout_range`` set): the anchors and the other views in two passes, each at a dropout rate
    drawn from the range."""

    name = "s_simcse"
    paper = "Zhang et al. 2021, S-SimCSE: Sampled Sub-networks for Contrastive Learning of Sentence Embedding"
    Options = SSimCSEOptions

    def enabled(self, config: Any) -> bool:
        """With a ``dropout_range``."""
        return bool(config.dropout_range)

    def problems(self, config: Any) -> list[str]:
        """A valid range, and neither ``dropout`` nor a shared dropout mask with it."""
        if not config.dropout_range:
            return []
        found = []
        try:
            dropout_bounds(config.dropout_range)
        except ValueError as e:
            found.append(f"dropout_range {config.dropout_range!r}: {e}")
        if config.dropout_mask == "shared" or config.dropout is not None:
            found.append(
                "dropout_range draws the rates itself; it does not combine with dropout or dropout_mask shared"
            )
        return found

    def separate_anchor(self, config: Any) -> bool:
        """Always: the anchors get a pass (and a rate) of their own."""
        return True

    def pass_hook(self, config: Any) -> SampledDropout:
        """:class:`SampledDropout` over the range."""
        return SampledDropout(*dropout_bounds(config.dropout_range))


METHOD = SSimCSE()
