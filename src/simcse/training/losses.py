"""SimCSE's contrastive loss (InfoNCE over cosine similarity / temperature) and the MLM auxiliary loss.

The loss takes ``views``: a (rows, V, dim) tensor. View 0 is the anchor, view 1 its positive, views 2.. (when
present) its hard negatives. Every positive and every hard negative in the (global) batch is a candidate for
every anchor; the target of anchor i is positive i. Variants plug in by producing other views or by
replacing this module, not by branching inside the training loop.

Across processes, candidates are gathered WITH gradient (:func:`gather_with_grad`) and each process averages
the loss over its own anchors. DDP's gradient averaging then gives exactly the gradient of the loss over the
concatenated global batch (tested against one process on 2 gloo processes). The original code's gather
keeps the gradient of the local slice only and every process averages over all anchors, so its gradient is
this one divided by the number of processes; ``gradient_scale`` reproduces it.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each process the sum over processes of d loss / d its slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process (rank order), keeping the gradient path to every slice."""
    return _GatherWithGrad.apply(x) if distributed() else x


class ContrastiveLoss(nn.Module):
    """InfoNCE over cosine similarities (or, with ``similarity="dot"``, dot products), in fp32.

    ``hard_negative_weight`` (alpha) multiplies exp(sim / tau) of each anchor's OWN hard negative (the paper's
    appendix, eq. with alpha^{1[i=j]}); alpha = 1 is the unweighted loss. The original code's
    ``--hard_negative_weight w`` adds w to that logit, i.e. w = ln(alpha): its default 0 is alpha = 1.
    """

    def __init__(
        self,
        temperature: float = 0.05,
        hard_negative_weight: float = 1.0,
        gradient_scale: float = 1.0,
        similarity: str = "cosine",
    ):
        super().__init__()
        if similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity must be cosine or dot, got {similarity!r}")
        self.similarity = similarity  # dot: the paper's temperature table's "dot product" row
        self.temperature = temperature
        self.hard_negative_weight = hard_negative_weight
        # 1 / world size reproduces the original code's DDP gradient (ddp_gradient: original); the loss
        # value stays the same, only its gradient is scaled
        self.gradient_scale = gradient_scale

    def forward(self, views: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """``extra``: (M, dim) further negatives for every anchor (after the batch's candidates)."""
        rows, num_views, _ = views.shape
        if num_views < 2:
            raise ValueError(f"expected at least 2 views per row (anchor, positive), got {num_views}")
        z = F.normalize(views.float(), dim=-1) if self.similarity == "cosine" else views.float()
        anchors = z[:, 0]
        candidates = gather_with_grad(z[:, 1:].transpose(0, 1).reshape(-1, z.shape[-1]).contiguous())
        rank = dist.get_rank() if distributed() else 0
        # candidates are ordered [rank0 positives, rank0 negatives (per view), rank1 positives, ..., extra]
        if extra is not None:
            extra = F.normalize(extra.float(), dim=-1) if self.similarity == "cosine" else extra.float()
            candidates = torch.cat([candidates, extra])
        logits = anchors @ candidates.T / self.temperature
        per_rank = (num_views - 1) * rows
        local = torch.arange(rows, device=views.device)
        labels = rank * per_rank + local
        if num_views >= 3 and self.hard_negative_weight != 1.0:
            bias = torch.zeros_like(logits)
            weight = math.log(self.hard_negative_weight) if self.hard_negative_weight > 0 else -math.inf
            for view in range(2, num_views):  # each anchor's own hard negatives (the contradiction, ...)
                bias[local, rank * per_rank + (view - 1) * rows + local] = weight
            logits = logits + bias
        loss = F.cross_entropy(logits, labels)
        if self.gradient_scale != 1.0:
            loss = loss * self.gradient_scale + (loss * (1.0 - self.gradient_scale)).detach()
        return loss


class GaussianNegatives(nn.Module):
    """GS-InfoNCE (Wu et al. 2021): ``count`` vectors drawn from N(0, std^2) every step are further negatives
    of every anchor, smoothing the negative distribution. Drawn from the global torch generator, so a seed
    fixes them and a resumed run draws what the uninterrupted one would (GradCache computes the loss once
    per step: one draw)."""

    def __init__(self, loss: ContrastiveLoss, count: int, std: float = 1.0):
        super().__init__()
        self.loss, self.count, self.std = loss, count, std

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(self.count, views.shape[-1]) * self.std  # CPU generator: the same on any device
        return self.loss(views, extra=noise.to(views.device))


class SharedMaskViews(nn.Module):
    """``dropout_mask: shared`` (the paper's "fixed 0.1"): both views of a sentence under the SAME dropout
    mask are the same computation, so the sentence is encoded once and its embedding is both views. Takes
    (rows, 1, dim); the loss sees (rows, 2, dim), and the gradient of both copies reaches the one pass."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        if views.shape[1] != 1:
            raise ValueError(f"shared-mask views come one per row, got {views.shape[1]}")
        return self.loss(views.expand(-1, 2, -1))


def mlm_loss(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy of the LM head over masked positions only (the vocabulary projection is the
    expensive part, so it is applied to the ~15% masked tokens, not to every token), and their count."""
    selected = labels != -100
    count = int(selected.sum())
    if count == 0:
        return hidden.sum() * 0.0, 0
    logits = head(hidden[selected]).float()
    return F.cross_entropy(logits, labels[selected]), count
