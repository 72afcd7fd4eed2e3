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
from collections.abc import Callable, Sequence

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
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process (rank order), keeping the gradient path to every slice."""
    return _GatherWithGrad.apply(x) if distributed() else x


Source = Callable[
    [torch.Tensor], torch.Tensor
]  # views -> (M, dim) extra negatives (simcse.training.negatives)
Filter = Callable[[torch.Tensor], "torch.Tensor | None"]  # views -> (rows, candidates) True = drop, or None


def _prepare(x: torch.Tensor, similarity: str) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1) if similarity == "cosine" else x.float()


def _extras(
    sources: Sequence[Source], views: torch.Tensor, extra: torch.Tensor | None
) -> torch.Tensor | None:
    parts = ([extra] if extra is not None else []) + [source(views) for source in sources]
    parts = [p for p in parts if p is not None and p.shape[0]]
    return torch.cat([p.float() for p in parts]) if parts else None


def _drop(logits: torch.Tensor, filters: Sequence[Filter], views: torch.Tensor) -> torch.Tensor:
    """Drop (set to -inf) the candidates the filters name; they cover the batch's candidates, which come
    first, never the extra ones after them."""
    for source in filters:
        mask = source(views)
        if mask is None:
            continue
        full = torch.zeros_like(logits, dtype=torch.bool)
        full[:, : mask.shape[1]] = mask.to(logits.device)
        logits = logits.masked_fill(full, -math.inf)
    return logits


def _scaled(loss: torch.Tensor, gradient_scale: float) -> torch.Tensor:
    if gradient_scale == 1.0:
        return loss
    return loss * gradient_scale + (loss * (1.0 - gradient_scale)).detach()


class ContrastiveLoss(nn.Module):
    """InfoNCE over cosine similarities (or, with ``similarity="dot"``, dot products), in fp32.

    ``hard_negative_weight`` (alpha) multiplies exp(sim / tau) of each anchor's OWN hard negative (the paper's
    appendix, eq. with alpha^{1[i=j]}); alpha = 1 is the unweighted loss. The original code's
    ``--hard_negative_weight w`` adds w to that logit, i.e. w = ln(alpha): its default 0 is alpha = 1.

    ``sources`` add negatives beyond the batch (noise, a momentum queue), after the batch's candidates;
    ``filters`` drop batch candidates per anchor (a guide model's false negatives). With ``objective="binary"``
    (Contrastive Tension, Carlsson et al. 2021) every (anchor, candidate) pair is a binary decision instead:
    binary cross-entropy of sigmoid(sim / tau), label 1 for the anchor's positive and 0 for every other
    candidate, averaged over the pairs.
    """

    def __init__(
        self,
        temperature: float = 0.05,
        hard_negative_weight: float = 1.0,
        gradient_scale: float = 1.0,
        similarity: str = "cosine",
        sources: Sequence[Source] = (),
        filters: Sequence[Filter] = (),
        objective: str = "infonce",
    ):
        super().__init__()
        if similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity must be cosine or dot, got {similarity!r}")
        if objective not in ("infonce", "binary"):
            raise ValueError(f"objective must be infonce or binary, got {objective!r}")
        self.similarity = similarity  # dot: the paper's temperature table's "dot product" row
        self.temperature = temperature
        self.hard_negative_weight = hard_negative_weight
        # 1 / world size reproduces the original code's DDP gradient (ddp_gradient: original); the loss
        # value stays the same, only its gradient is scaled
        self.gradient_scale = gradient_scale
        self.sources, self.filters, self.objective = list(sources), list(filters), objective

    def forward(self, views: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """``extra``: (M, dim) further negatives for every anchor (after the batch's candidates)."""
        rows, num_views, _ = views.shape
        if num_views < 2:
            raise ValueError(f"expected at least 2 views per row (anchor, positive), got {num_views}")
        z = _prepare(views, self.similarity)
        anchors = z[:, 0]
        candidates = gather_with_grad(z[:, 1:].transpose(0, 1).reshape(-1, z.shape[-1]).contiguous())
        rank = dist.get_rank() if distributed() else 0
        # candidates are ordered [rank0 positives, rank0 negatives (per view), rank1 positives, ..., extra]
        extra = _extras(self.sources, views, extra)
        if extra is not None:
            candidates = torch.cat([candidates, _prepare(extra, self.similarity)])
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
        if self.objective == "binary":
            targets = torch.zeros_like(logits)
            targets[local, labels] = 1.0
            keep = _drop(torch.zeros_like(logits), self.filters, views).isfinite() & logits.isfinite()
            loss = F.binary_cross_entropy_with_logits(logits[keep], targets[keep])
        else:
            loss = F.cross_entropy(_drop(logits, self.filters, views), labels)
        return _scaled(loss, self.gradient_scale)


class OffDropoutLoss(nn.Module):
    """SimCSE++'s "off-dropout" negatives (Xu et al. 2023): views (rows, 3, dim) are the anchor and its
    positive (both under dropout) and the anchor again with dropout off. The positive logit is
    sim(anchor, positive) / tau; the negatives of row i are sim(n_i, n_j) / tau for every other row j of the
    (global) batch, n being the dropout-off embeddings (as in the SimCSE++ code: both sides of a negative
    pair without dropout), and the denominator also holds the positive. ``sources`` add negatives of n_i."""

    def __init__(
        self,
        temperature: float = 0.05,
        gradient_scale: float = 1.0,
        similarity: str = "cosine",
        sources: Sequence[Source] = (),
    ):
        super().__init__()
        self.temperature, self.gradient_scale, self.similarity = temperature, gradient_scale, similarity
        self.sources = list(sources)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """The loss of ``views`` (rows, 3, dim): anchor, positive and dropout-off anchor."""
        rows, num_views, _ = views.shape
        if num_views != 3:
            raise ValueError(
                f"off-dropout negatives take 3 views per row (anchor, positive, plain), got {num_views}"
            )
        z = _prepare(views, self.similarity)
        anchors, positives, plain = z[:, 0], z[:, 1], z[:, 2]
        everyone = gather_with_grad(plain.contiguous())
        rank = dist.get_rank() if distributed() else 0
        local = torch.arange(rows, device=views.device)
        negatives = plain @ everyone.T / self.temperature
        negatives = negatives.masked_fill(
            torch.zeros_like(negatives, dtype=torch.bool).index_put_(
                (local, rank * rows + local), torch.tensor(True, device=views.device)
            ),
            -math.inf,
        )
        parts = [((anchors * positives).sum(-1) / self.temperature).unsqueeze(1), negatives]
        extra = _extras(self.sources, views, None)
        if extra is not None:
            parts.append(plain @ _prepare(extra, self.similarity).T / self.temperature)
        logits = torch.cat(parts, 1)
        loss = F.cross_entropy(logits, torch.zeros(rows, dtype=torch.long, device=views.device))
        return _scaled(loss, self.gradient_scale)


class DimensionContrast(nn.Module):
    """SimCSE++'s dimension-wise contrastive term, added to ``loss`` with ``weight``: each embedding dimension
    is standardised over the (global) batch (batch norm without affine parameters, as the SimCSE++ code),
    and dimension k of the anchors is contrasted against dimension k of the positives (the positive) and
    the other dimensions (negatives), at ``temperature`` (the code's 5): with correlations c = z1^T z2 / B,
    the term is mean_k(-c_kk / t + logsumexp_j(c_kj / t)). With a dropout-off view (SimCSE++ with both
    parts), the negatives are, as in the code, the dropout-off embeddings' raw (unstandardised) second
    moments n^T n / B for j != k, next to the positive.

    Every process computes the term over the gathered batch, so the gradient is the single-process one."""

    def __init__(self, loss: nn.Module, weight: float, temperature: float = 5.0):
        super().__init__()
        self.loss, self.weight, self.temperature = loss, weight, temperature

    def term(self, views: torch.Tensor) -> torch.Tensor:
        """The dimension-wise contrastive term of ``views`` (rows, 2 or 3, dim), over the gathered batch."""
        z = views.float()
        gathered = (
            gather_with_grad(z.transpose(0, 1).reshape(-1, z.shape[-1]).contiguous())
            if distributed()
            else None
        )
        if gathered is not None:  # rank-major blocks of (views x rows): back to (global rows, views, dim)
            world = dist.get_world_size()
            z = (
                gathered.view(world, z.shape[1], z.shape[0], -1)
                .permute(0, 2, 1, 3)
                .reshape(-1, z.shape[1], z.shape[-1])
            )
        batch = z.shape[0]
        standard = [
            F.batch_norm(z[:, v], None, None, training=True, eps=1e-5) for v in range(min(2, z.shape[1]))
        ]
        z1, z2 = standard
        positive = (z1 * z2).sum(0) / batch / self.temperature  # (dim,)
        if z.shape[1] == 3:
            plain = z[:, 2]
            others = plain.T @ plain / batch / self.temperature
            eye = torch.eye(others.shape[0], dtype=torch.bool, device=others.device)
            logits = torch.cat([others.masked_fill(eye, -math.inf), positive.unsqueeze(1)], 1)
            target = torch.full((logits.shape[0],), logits.shape[1] - 1, device=z.device)
        else:
            logits = z1.T @ z2 / batch / self.temperature
            target = torch.arange(logits.shape[0], device=z.device)
        return F.cross_entropy(logits, target)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """The wrapped loss plus ``weight`` times :meth:`term`."""
        return self.loss(views) + self.weight * self.term(views)


class SharedMaskViews(nn.Module):
    """``dropout_mask: shared`` (the paper's "fixed 0.1"): both views of a sentence under the SAME dropout
    mask are the same computation, so the sentence is encoded once and its embedding is both views. Takes
    (rows, 1, dim); the loss sees (rows, 2, dim), and the gradient of both copies reaches the one pass."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """The wrapped loss of the one view per row (rows, 1, dim) used as both views."""
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
