"""Alignment and uniformity (Wang & Isola, 2020) of normalised embeddings, computed in fp32.

- alignment: E ||f(x) - f(y)||^2 over positive pairs (STS-B pairs with gold score > 4);
- uniformity: log E exp(-t ||f(x) - f(y)||^2), t = 2, over all pairs of distinct sentences.
Lower is better for both.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

POSITIVE_THRESHOLD = 4.0


def alignment(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, alpha: float = 2.0) -> float:
    """Alignment: the mean of ``||x_i - y_i|| ** alpha`` over the rows of ``x`` and ``y`` (positive pairs),
    after normalising each row."""
    x = F.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)
    y = F.normalize(torch.as_tensor(y, dtype=torch.float32), dim=-1)
    return float((x - y).norm(dim=1).pow(alpha).mean())


def uniformity(x: np.ndarray | torch.Tensor, t: float = 2.0) -> float:
    """Uniformity: ``log mean exp(-t ||x_i - x_j||^2)`` over all pairs i < j of the unit rows of ``x``."""
    x = F.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)
    sq = torch.pdist(x, p=2).pow(2)
    # log-mean-exp, stable
    return float(torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel()))
