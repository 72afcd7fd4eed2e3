"""Cached-gradient large batches (GradCache, Gao et al. 2021) with replayed dropout.

A contrastive batch cannot be split into accumulated micro-batches: each anchor must see every candidate.
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

import torch


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
        out.append({k: v[:, :longest] for k, v in part.items()})
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
