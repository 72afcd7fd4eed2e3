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
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            for p in params:
                if not self.state[p]:
                    self.state[p].update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            states = [self.state[p] for p in params]
            grads = [p.grad for p in params]
            exp_avgs, exp_avg_sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
            # every parameter of a group steps together, so they share one step count (foreach: one call
            # per operation for the whole group, as fast as torch's foreach AdamW)
            step = states[0]["step"] + 1
            for s in states:
                s["step"] = step
            torch._foreach_mul_(exp_avgs, beta1)
            torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
            denoms = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_add_(denoms, group["eps"])
            step_size = group["lr"] * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
            torch._foreach_addcdiv_(params, exp_avgs, denoms, value=-step_size)
            if group["weight_decay"] > 0.0:  # decoupled, after the update, as transformers 4.x
                torch._foreach_mul_(params, 1.0 - group["lr"] * group["weight_decay"])
        return loss
