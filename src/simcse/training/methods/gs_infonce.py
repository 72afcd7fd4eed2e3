"""GS-InfoNCE (Wu et al. 2021): Gaussian noise vectors as extra negatives of every anchor each step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simcse.core.options import must_be_non_negative, must_be_positive, option
from simcse.training.methods.base import Context, Method, Negatives

GROUP = "GS-InfoNCE (Wu et al. 2021)"


@dataclass
class GSInfoNCEOptions:
    """GS-InfoNCE's options; each field's help line documents it."""

    noise_negatives: int = option(
        0,
        "GS-InfoNCE: this many Gaussian noise vectors as extra negatives of every anchor each step",
        GROUP,
    )
    noise_std: float = option(
        1.0, "GS-InfoNCE: the noise's standard deviation (with cosine only the direction counts)", GROUP
    )


class GSInfoNCE(Method):
    """GS-InfoNCE (``noise_negatives`` > 0): Gaussian noise vectors as extra negatives."""

    name = "gs_infonce"
    paper = "Wu et al. 2021, Smoothed Contrastive Learning for Unsupervised Sentence Embedding"
    Options = GSInfoNCEOptions

    def enabled(self, config: Any) -> bool:
        """With ``noise_negatives`` > 0."""
        return config.noise_negatives > 0

    def problems(self, config: Any) -> list[str]:
        """A positive ``noise_std`` and a non-negative ``noise_negatives``."""
        return must_be_positive(config, "noise_std") + must_be_non_negative(config, "noise_negatives")

    def negatives(self, config: Any, context: Context) -> Negatives:
        """:class:`~simcse.training.negatives.GaussianNoise` as a negative source."""
        from simcse.training.negatives import GaussianNoise

        return Negatives(sources=[GaussianNoise(config.noise_negatives, config.noise_std)])


METHOD = GSInfoNCE()
