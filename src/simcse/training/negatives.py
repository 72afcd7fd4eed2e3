"""Where negatives come from besides the batch, and which in-batch negatives are dropped: the pieces the
SimCSE follow-ups plug into :class:`~simcse.training.losses.ContrastiveLoss`.

- :class:`GaussianNoise` (GS-InfoNCE): random vectors as further negatives of every anchor;
- :class:`MomentumQueue` (ESimCSE): the anchors of earlier steps, encoded by a momentum (EMA) copy of the
  encoder with dropout off, as further negatives;
- :class:`GuideFilter` (false-negative filtering, as GISTEmbed): a frozen guide model drops the in-batch
  negatives it rates closer to the anchor than the anchor's positive.

A source is called with the loss's views and returns (M, dim) extra negatives; a filter returns the
(anchors, candidates) boolean mask of candidates to drop. Pieces that need the batch's token ids (the queue's
momentum pass, the guide) are also step hooks: the loop calls ``before_step(batch)`` before the step's
forward and ``after_step()`` after the weights are updated, so they work the same with the plain step and
GradCache, whose loss sees only the embeddings.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from simcse.modeling.encoder import Encoder
from simcse.training.losses import distributed


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` of every process, concatenated in rank order (no gradient)."""
    if not distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class GaussianNoise:
    """GS-InfoNCE (Wu et al. 2021): ``count`` vectors drawn from N(0, std^2) every step. Drawn from the global
    torch CPU generator, so a seed fixes them on any device and a resumed run draws what the uninterrupted one
    would (the loss is computed once per step, with GradCache too: one draw)."""

    def __init__(self, count: int, std: float = 1.0):
        self.count, self.std = count, std

    def __call__(self, views: torch.Tensor) -> torch.Tensor:
        return (torch.randn(self.count, views.shape[-1]) * self.std).to(views.device)


class MomentumQueue(nn.Module):
    """ESimCSE's momentum contrast (Wu et al. 2022): a queue of the last ``size`` anchors, encoded with
    dropout off by a momentum copy of the encoder, are negatives of every anchor.

    As the ESimCSE code does, at each step: the copy's backbone moves towards the encoder's
    (theta_m <- m theta_m + (1 - m) theta, before the step's update); the step's anchors (view 0 of each row)
    are encoded by it, with the encoder's current MLP, and join the queue after the step's loss (a step never
    sees its own anchors there); the oldest entries leave. With several processes every process enqueues the
    anchors of all of them (gathered in rank order), so the queues stay identical.

    A submodule of the trained model, so checkpoints keep the copy and the queue and a resumed run goes on
    exactly; its parameters take no gradient and are not optimised. Unlike the ESimCSE code, the queue is not
    emptied at each epoch (it is one epoch there).
    """

    def __init__(self, encoder: Encoder, size: int, momentum: float, views: int):
        super().__init__()
        self.copy = copy.deepcopy(encoder)
        self.copy.requires_grad_(False)
        self.copy.eval()
        self._live = [encoder]  # a list: not a registered submodule (the encoder is saved once, as itself)
        self.size, self.momentum, self.views = size, momentum, views
        self.register_buffer("queue", torch.zeros(size, encoder.dim))
        self.register_buffer("filled", torch.zeros(1, dtype=torch.long))
        self._pending: torch.Tensor | None = None

    def train(self, mode: bool = True) -> MomentumQueue:
        """Train or eval mode as asked, but the momentum copy always in eval mode (its keys are encoded
        without dropout)."""
        super().train(mode)
        self.copy.eval()  # the queue's keys are always encoded without dropout
        return self

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """The queue's entries: a negative source."""
        return self.queue[: int(self.filled)].to(views.dtype)

    @torch.no_grad()
    def before_step(self, batch: dict[str, torch.Tensor]) -> None:
        """Move the copy towards the encoder, copy the encoder's MLP, and encode the step's anchors (view 0 of
        each row of ``batch``), gathered from every process, to enqueue after the step."""
        live = self._live[0]
        for mine, theirs in zip(self.copy.backbone.parameters(), live.backbone.parameters()):
            mine.mul_(self.momentum).add_(theirs.detach(), alpha=1.0 - self.momentum)
        if live.mlp is not None:
            self.copy.mlp.load_state_dict(live.mlp.state_dict())
        ids, mask = batch["input_ids"][:: self.views], batch["attention_mask"][:: self.views]
        longest = int(mask.sum(1).max())
        keys = self.copy(ids[:, :longest], mask[:, :longest], with_mlp=True).float()
        self._pending = gather_no_grad(keys)

    @torch.no_grad()
    def after_step(self) -> None:
        """Enqueue the step's anchors, dropping the oldest entries beyond ``size``."""
        if self._pending is None:
            return
        keys, self._pending = self._pending[-self.size :], None
        kept = self.queue[: int(self.filled)][max(0, int(self.filled) + len(keys) - self.size) :]
        merged = torch.cat([kept, keys.to(self.queue.dtype)])
        self.queue[: len(merged)] = merged
        self.filled.fill_(len(merged))


class GuideFilter:
    """False-negative filtering with a guide model (GISTEmbed, Solatorio 2024): for each anchor, every in-batch
    candidate that the frozen guide rates closer to the anchor than the anchor's own positive, minus
    ``margin``, is dropped from the denominator (the positive itself never is). With unsup rows the positive is
    the sentence itself (guide similarity 1), so only duplicates of the anchor in the batch are dropped.

    The collator tokenises the rows with the guide's tokenizer (``guide_*`` tensors); :meth:`before_step`
    takes them out of the batch, encodes them (eval mode, no gradient) and computes the mask for the step.
    Candidates are ordered as the loss orders them (positives, then each hard-negative view, per process in
    rank order); candidates beyond the batch (queue, noise) are never dropped.
    """

    def __init__(self, guide: Encoder, margin: float = 0.0):
        self.guide, self.margin = guide, margin
        self.guide.requires_grad_(False)
        self.guide.eval()
        self._mask: torch.Tensor | None = None

    def before_step(self, batch: dict[str, torch.Tensor]) -> None:
        """Take the guide's tensors out of ``batch``, encode them and compute the step's :meth:`mask`."""
        ids, attention = batch.pop("guide_input_ids"), batch.pop("guide_attention_mask")
        columns = int(batch.pop("guide_columns"))
        views = int(batch["views"]) if "views" in batch else 2
        self._mask = self.mask(self.embed(ids, attention).view(-1, columns, self.guide.dim), views)

    @torch.no_grad()
    def embed(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """The guide's unit embeddings of the token ids (no gradient)."""
        return F.normalize(self.guide(ids, attention).float(), dim=-1)

    def mask(self, guide_views: torch.Tensor, views: int) -> torch.Tensor:
        """(rows, candidates) True where the candidate is dropped; ``guide_views`` (rows, columns, dim) is the
        guide's unit embeddings of each row's texts (one column: the views are that sentence again)."""
        if guide_views.shape[1] == 1:
            guide_views = guide_views.expand(-1, max(views, 2), -1)
        rows = guide_views.shape[0]
        anchors = guide_views[:, 0]
        local = guide_views[:, 1:].transpose(0, 1).reshape(-1, guide_views.shape[-1])
        candidates = gather_no_grad(local)
        rank = dist.get_rank() if distributed() else 0
        target = rank * local.shape[0] + torch.arange(rows, device=anchors.device)
        sims = anchors @ candidates.T
        positive = sims[torch.arange(rows), target]
        drop = sims > (positive - self.margin).unsqueeze(1)
        drop[torch.arange(rows), target] = False
        return drop

    def __call__(self, views: torch.Tensor) -> torch.Tensor | None:
        return self._mask

    def after_step(self) -> None:
        """Forget the step's mask."""
        self._mask = None
