"""One training step's forward and backward, chosen once per run: the plain step (the whole batch in one
pass) or GradCache; and the check that the step's loss and gradients are finite.

A step function takes the batch (on the device) and returns (loss, the auxiliary losses by name: ``mlm``,
DiffCSE's ``rtd``), leaving the parameter gradients in place; the optimiser update is the loop's. The model's
forward returns each auxiliary term as (sum over its scored tokens, their number); a step adds weight * sum /
the batch's number of scored tokens (counted from ``NAME_labels``, so GradCache's chunks add up to the mean
over the whole batch).

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

from simcse.core.errors import TrainingError
from simcse.core.runtime import Dist
from simcse.training import methods
from simcse.training.config import TrainConfig
from simcse.training.masking import IGNORE

StepFn = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]]
Forward = Callable[..., tuple[torch.Tensor, dict[str, tuple[torch.Tensor, int]]]]


def aux_weights(config: TrainConfig) -> dict[str, float]:
    """The weight of each auxiliary term the run's methods give the model (it returns only those its batch
    feeds)."""
    return {term[0]: m.aux_weight(config) for m in methods.enabled(config) if (term := m.aux_term(config))}


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
    forward: Forward,
    batch: dict[str, torch.Tensor],
    views: int,
    chunk_rows: int,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    weights: dict[str, float],
    device: torch.device,
    autocast: contextlib.AbstractContextManager,
    scale: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One GradCache step: leaves parameter gradients in place, returns (contrastive loss, the auxiliary
    losses by name).

    ``forward(**chunk)`` returns (embeddings, {name: (sum, count)}); the auxiliary terms are computed per
    chunk in the replay, normalised by the whole batch's count and weighted by ``weights``; ``scale`` is the
    fp16 loss scaler's ``scale`` (identity otherwise).
    """
    chunks = _chunks(batch, views, chunk_rows)
    states, reps = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_rng_state(device))
            with autocast:
                # the embeddings only: no auxiliary inputs (their terms come in the replay)
                first = {k: v for k, v in chunk.items() if k in ("input_ids", "attention_mask", "template")}
                reps.append(forward(**first)[0].float())
    end_state = _rng_state(device)
    cache = torch.cat(reps).detach().requires_grad_()
    loss = loss_fn(cache.view(-1, views, cache.shape[-1]))
    scale(loss).backward()
    grads = cache.grad.split([r.shape[0] for r in reps])

    totals = {
        name: int((batch[f"{name}_labels"] != IGNORE).sum()) for name in weights if f"{name}_labels" in batch
    }
    aux: dict[str, torch.Tensor] = {}
    for i, (chunk, grad) in enumerate(zip(chunks, grads)):
        _set_rng_state(states[i], device)
        sync = contextlib.nullcontext() if i == len(chunks) - 1 else no_sync()
        with sync:
            with autocast:
                emb, terms = forward(**chunk)
            surrogate = (emb.float() * grad).sum()
            for name, (total, _) in terms.items():
                part = total.float() / max(totals[name], 1)  # a zero term still joins the graph (DDP)
                surrogate = surrogate + scale(weights[name] * part)
                aux[name] = aux.get(name, 0.0) + part.detach()
            surrogate.backward()
    _set_rng_state(end_state, device)
    return loss.detach(), aux


def plain_step(
    forward: Forward,
    batch: dict[str, torch.Tensor],
    views: int,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    weights: dict[str, float],
    autocast: contextlib.AbstractContextManager,
    scale: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The whole batch in one forward pass (each row's views together), then backward; each auxiliary term
    the batch feeds is added with its weight."""
    with autocast:
        emb, terms = forward(**{k: v for k, v in batch.items() if v.dim() > 0})
    loss = loss_fn(emb.float().view(-1, views, emb.shape[-1]))
    aux = {}
    for name, (total, count) in terms.items():
        aux[name] = total.float() / max(count, 1)
        loss = loss + weights[name] * aux[name]
    scale(loss).backward()
    return loss, {name: value.detach() for name, value in aux.items()}


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
    weights = aux_weights(config)
    if config.gradcache_chunk_size:
        no_sync = getattr(forward, "no_sync", contextlib.nullcontext)

        def step(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            cl, aux = gradcache_step(
                forward,
                batch,
                views,
                config.gradcache_chunk_size,
                loss_fn,
                weights,
                device,
                autocast,
                scaler.scale,
                no_sync,
            )
            return cl + sum(weights[name] * value for name, value in aux.items()), aux

        return step
    return lambda batch: plain_step(forward, batch, views, loss_fn, weights, autocast, scaler.scale)


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
