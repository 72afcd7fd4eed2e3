"""One training step's forward and backward, chosen once per run: the plain step (the whole batch in one
pass) or GradCache; and the check that the step's loss and gradients are finite.

A step function takes the batch (on the device) and returns (loss, MLM loss), leaving the parameter
gradients in place; the optimiser update is the loop's.

Cached-gradient large batches (GradCache, Gao et al. 2021) with replayed dropout. A contrastive batch cannot be split into accumulated micro-batches: each anchor must see every candidate.
GradCache keeps the full batch of negatives while holding activations for one chunk at a time:

1. embed every chunk without autograd, recording the random-generator state before each chunk;
2. compute the loss on the concatenated embeddings and d loss / d embedding (the "cache");
3. re-embed each chunk WITH autograd after restoring its random state, so dropout draws the SAME masks
   as in step 1, and backpropagate the cached gradient through it.

The parameter gradient equals that of one pass over the whole batch with the same dropout masks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import torch

from simcse.config import TrainConfig
from simcse.errors import TrainingError
from simcse.runtime import Dist

StepFn = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


def _rng_state(device: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _chunks(batch: dict[str, torch.Tensor], views: int, chunk_rows: int) -> list[dict[str, torch.Tensor]]:
    """Split sequences (row-major, ``views`` per row) into chunks of whole rows, trimming padding."""
    n = batch["input_ids"].shape[0]
    step = chunk_rows * views
    out = []
    for start in range(0, n, step):
        part = {k: v[start : start + step] for k, v in batch.items() if v.dim() > 0}
        longest = int(part["attention_mask"].sum(1).max())
        out.append({k: v[:, :longest] if v.dim() > 1 else v for k, v in part.items()})
    return out


def gradcache_step(
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor, int]],
    batch: dict[str, torch.Tensor],
    views: int,
    chunk_rows: int,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    mlm_weight: float,
    device: torch.device,
    autocast: contextlib.AbstractContextManager,
    scale: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One GradCache step: leaves parameter gradients in place, returns (contrastive loss, MLM loss).

    ``forward(**chunk)`` returns (embeddings, MLM cross-entropy sum, number of masked tokens);
    ``scale`` is the fp16 loss scaler's ``scale`` (identity otherwise).
    """
    chunks = _chunks(batch, views, chunk_rows)
    states, reps = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_rng_state(device))
            with autocast:
                reps.append(
                    forward(**{k: v for k, v in chunk.items() if not k.startswith("mlm_")})[0].float()
                )
    end_state = _rng_state(device)
    cache = torch.cat(reps).detach().requires_grad_()
    loss = loss_fn(cache.view(-1, views, cache.shape[-1]))
    scale(loss).backward()
    grads = cache.grad.split([r.shape[0] for r in reps])

    total_masked = int((batch["mlm_labels"] != -100).sum()) if "mlm_labels" in batch else 0
    mlm_total = torch.zeros((), device=device)
    for i, (chunk, grad) in enumerate(zip(chunks, grads)):
        _set_rng_state(states[i], device)
        sync = contextlib.nullcontext() if i == len(chunks) - 1 else no_sync()
        with sync:
            with autocast:
                emb, mlm_sum, _ = forward(**chunk)
            surrogate = (emb.float() * grad).sum()
            if total_masked:
                mlm_part = mlm_sum / total_masked
                surrogate = surrogate + scale(mlm_weight * mlm_part)
                mlm_total = mlm_total + mlm_part.detach()
            surrogate.backward()
    _set_rng_state(end_state, device)
    return loss.detach(), mlm_total


def plain_step(
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor, int]],
    batch: dict[str, torch.Tensor],
    views: int,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    mlm_weight: float | None,
    autocast: contextlib.AbstractContextManager,
    scale: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch in one forward pass (each row's views together), then backward. ``mlm_weight``
    None: no MLM loss is added."""
    with autocast:
        emb, mlm_sum, masked = forward(
            batch["input_ids"],
            batch["attention_mask"],
            batch.get("mlm_input_ids"),
            batch.get("mlm_labels"),
            template=batch.get("template"),
        )
    cl = loss_fn(emb.float().view(-1, views, emb.shape[-1]))
    mlm = mlm_sum.float() / max(masked, 1)
    loss = cl + mlm_weight * mlm if mlm_weight is not None else cl
    scale(loss).backward()
    return loss, mlm


def make_step(
    config: TrainConfig,
    forward: torch.nn.Module,
    views: int,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    autocast: contextlib.AbstractContextManager,
    scaler: torch.amp.GradScaler,
) -> StepFn:
    """The run's step function: GradCache when ``gradcache_chunk_size`` is set, else the plain step."""
    if config.gradcache_chunk_size:
        no_sync = getattr(forward, "no_sync", contextlib.nullcontext)

        def step(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            cl, mlm = gradcache_step(forward, batch, views, config.gradcache_chunk_size, loss_fn,
                                     config.mlm_weight, device, autocast, scaler.scale, no_sync)  # fmt: skip
            return cl + config.mlm_weight * mlm, mlm

        return step
    mlm_weight = config.mlm_weight if config.do_mlm else None
    return lambda batch: plain_step(forward, batch, views, loss_fn, mlm_weight, autocast, scaler.scale)


def check_finite(
    loss: torch.Tensor,
    grad_norm: torch.Tensor | None,
    model: torch.nn.Module,
    scaler: torch.amp.GradScaler,
    dist: Dist,
    step: int,
    checkpoints: Path,
) -> None:
    """Stop before the update when the loss or the gradient is NaN/inf on any process; all processes stop
    together (a lone raise would leave the others waiting). One host sync. With fp16 the loss scaler skips
    such steps by itself, so only the loss is checked there."""
    finite = [torch.isfinite(loss.detach())]
    if not scaler.is_enabled():
        if grad_norm is None:
            grad_norm = torch.nn.utils.get_total_norm(
                [p.grad for p in model.parameters() if p.grad is not None]
            )
        finite.append(torch.isfinite(grad_norm).to(loss.device))
    ok = dist.all_min(torch.stack(finite).float()).bool().tolist()  # [loss finite, gradient finite]
    if not ok[0]:
        value = loss.item() if dist.world_size == 1 else f"not finite on a process (here {loss.item():.4g})"
        raise TrainingError(
            f"loss is {value} at step {step}; stopping. The last good checkpoint is "
            f"kept in {checkpoints}; lower the learning rate or use precision fp32/bf16"
        )
    if not all(ok):
        raise TrainingError(
            f"gradient norm is {grad_norm.item()} (loss {loss.item():.4g}) at step {step}; stopping before the "
            f"weights are updated. The last good checkpoint is kept in {checkpoints}; lower the learning rate "
            "or check the model"
        )
