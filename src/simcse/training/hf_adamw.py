"""The AdamW of transformers 4.x (``transformers.optimization.AdamW``, ``correct_bias=True``), which the
original SimCSE's Trainer used. It differs from ``torch.optim.AdamW`` only in where epsilon goes: it divides
by ``sqrt(v) + eps`` and folds the bias corrections into the step size, so in torch's form its epsilon is
``eps / sqrt(1 - beta2**t)``: about 30x larger at the first step, 2.3x after 200. It is here so that a
trainer-parity run can use the original's optimizer (``optimizer: adamw_hf``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


class HFAdamW(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                step_size = (
                    group["lr"] * math.sqrt(1.0 - beta2 ** state["step"]) / (1.0 - beta1 ** state["step"])
                )
                p.addcdiv_(exp_avg, denom, value=-step_size)
                if group["weight_decay"] > 0.0:  # decoupled, after the update, as transformers 4.x
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        return loss
