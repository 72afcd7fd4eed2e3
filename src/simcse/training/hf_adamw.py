"""The AdamW of transformers 4.x (``transformers.optimization.AdamW``, ``correct_bias=True``), which the
original SimCSE's Trainer used, and so the default here (``optimizer: adamw_hf``).

It differs from ``torch.optim.AdamW`` in two places. Epsilon: it divides by ``sqrt(v) + eps`` and folds the
bias corrections into the step size, which is torch's update with epsilon ``eps / sqrt(1 - beta2**t)``
(about 30x larger at the first step, 2.3x after 200). Weight decay: it decays the weights after the Adam
update, torch before it. So this is torch's AdamW (fused where torch has it: as fast as ``optimizer:
adamw``) with that epsilon set before every step and its own weight decay turned into a decoupled decay
after the step. The step count and the base epsilon and weight decay live in the param groups, so they are
saved and restored with the optimizer's state. A step that fp16's GradScaler skips (an overflow) counts
for nothing, as in the original's Trainer, where ``scaler.step`` does not call the optimizer then.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


class HFAdamW(torch.optim.AdamW):
    """transformers 4.x's AdamW (``correct_bias=True``) as torch's AdamW (``fused`` / ``foreach`` as torch's)
    with a per-step epsilon and a decoupled weight decay after the update; the module docstring explains the
    two differences."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        fused: bool | None = None,
        foreach: bool | None = None,
    ):
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused, foreach=foreach
        )
        for group in self.param_groups:
            group.update(
                hf_eps=group["eps"], hf_weight_decay=group["weight_decay"], hf_step=0, weight_decay=0.0
            )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of the parameters that have gradients: torch's AdamW step with epsilon ``eps / sqrt(1 -
        beta2**t)``, then the weight decay; a step GradScaler skipped (fp16 overflow) is not counted. Returns
        ``closure``'s loss."""
        stepped = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            stepped.append(params)
            if params:
                # every parameter of a group steps together, so they share one step count
                group["hf_step"] += 1
                group["eps"] = group["hf_eps"] / math.sqrt(1.0 - group["betas"][1] ** group["hf_step"])
        loss = super().step(closure)
        found_inf = getattr(self, "found_inf", None)  # fp16: GradScaler's overflow flag for a fused step
        if found_inf is not None and bool(found_inf.item()):  # the step was skipped, as the original's
            for group, params in zip(self.param_groups, stepped):
                group["hf_step"] -= 1 if params else 0
            return loss
        for group, params in zip(self.param_groups, stepped):
            if params and group["hf_weight_decay"] > 0.0:  # decoupled, after the update, as transformers 4.x
                torch._foreach_mul_(params, 1.0 - group["lr"] * group["hf_weight_decay"])
        return loss
