"""Faster dropout for CPU training.

On the CPU, ``torch.bernoulli_`` draws one 32-bit number from the Mersenne Twister per element; in SimCSE's
unsup training (dropout IS the augmentation) the masks cost ~15% of a step. Here every 64-bit draw of
the same global generator gives two 32-bit uniform integers, and an element is kept when its integer is at
least ``round(p * 2**32)``: Bernoulli(1 - p) to within 2**-32 of p, from the same random state (so
checkpoints and GradCache's replay still restore it). On other devices it is ``F.dropout``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """A boolean mask of ``shape``, each element True (kept) with probability 1 - ``p`` (to within 2**-32),
    from two 32-bit integers per 64-bit draw of torch's global generator."""
    n = math.prod(shape)
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 1) // 2,), dtype=torch.int64)
    bits = words.view(torch.int32)[:n]
    return (bits >= (-(2**31) + round(p * 2**32))).view(shape)


class FastDropout(nn.Module):
    """``nn.Dropout`` with drop probability ``p`` whose CPU masks come from :func:`keep_mask`; on other
    devices it is ``F.dropout``."""

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with elements dropped and the rest scaled by 1 / (1 - p) in training mode; ``x`` itself in
        eval mode or when p is 0."""
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        return torch.where(keep_mask(x.shape, self.p), x * (1.0 / (1.0 - self.p)), 0.0)

    def extra_repr(self) -> str:
        """``p=...``, for the module's repr."""
        return f"p={self.p}"


def use_fast_dropout(module: nn.Module) -> int:
    """Replace every ``nn.Dropout`` inside ``module`` by :class:`FastDropout`; returns how many."""
    count = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p))
                count += 1
    return count


def set_dropout(module: nn.Module, p: float, record: bool = True) -> int:
    """Set the rate of every dropout layer inside ``module`` (torch's and :class:`FastDropout`), and (with
    ``record``) the rates its config records, so that the saved config says what was trained; returns how
    many layers. Attention reads its layer's ``p`` too (SDPA's ``dropout_p`` and the packed path)."""
    count = 0
    for child in module.modules():
        if isinstance(child, (nn.Dropout, FastDropout)):
            child.p = p
            count += 1
    if not record:
        return count
    config = getattr(module, "config", None)
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"):
        if isinstance(getattr(config, name, None), float):
            setattr(config, name, p)
    return count
