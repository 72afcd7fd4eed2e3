"""The module that is trained: the encoder, and what the run's methods add to it (a second encoder, the MLM
head, DiffCSE's discriminator and projection, ESimCSE's momentum queue)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from simcse.modeling.encoder import Encoder

# (model, embeddings, NAME_input_ids, attention_mask, NAME_labels) -> (loss summed over the scored tokens, their number)
AuxTerm = Callable[..., tuple[torch.Tensor, int]]


class SimCSEModel(nn.Module):
    """``forward(input_ids, attention_mask, template=None, **aux_inputs)`` -> (sentence embeddings, the
    auxiliary terms). An auxiliary term ``NAME`` (``aux_terms``: the MLM loss's ``mlm``, DiffCSE's ``rtd``)
    is computed when the batch brings ``NAME_input_ids`` and ``NAME_labels`` (-100: not scored), as (its
    loss summed over the scored tokens, their number), so a step normalises each over the batch.

    The embeddings are computed first, then the auxiliary passes, so GradCache's replay of the random state
    reproduces the embedding pass's dropout masks.

    The sequences come row-major with ``views`` per row. By default every view goes through ``encoder`` in
    one pass. ``separate_anchor`` (or a ``second_encoder``, ``encoders: two``, the paper's Table 2) makes
    view 0 (the anchor) one pass and the others another (through the second encoder when there is one),
    each preceded, in training, by every ``pass_hooks`` function of the encoder (S-SimCSE draws a dropout
    rate there); ``dropout_off_views`` (SimCSE++) are encoded in a pass of their own with dropout off (the encoder
    in eval mode: attention dropout too), with gradient. The embeddings are put back in the batch's order,
    and with ``projector`` (DiffCSE's BatchNorm projection) the whole batch's go through it together.

    ``parts`` are modules the methods add, registered under their names (the checkpoint's keys:
    ``mlm_head``, ``discriminator``); ESimCSE's ``momentum`` queue is registered later, by its loss piece.
    Only ``encoder`` is evaluated and saved; the rest is kept in resumable checkpoints only.

    ``template`` (pooler prompt) is each sequence's template index, as the collator made it.
    """

    def __init__(
        self,
        encoder: Encoder,
        views: int = 2,
        second_encoder: Encoder | None = None,
        separate_anchor: bool = False,
        pass_hooks: Sequence[Callable[[Encoder], None]] = (),
        dropout_off_views: tuple[int, ...] = (),
        projector: nn.Module | None = None,
        parts: dict[str, nn.Module] | None = None,
        aux_terms: dict[str, AuxTerm] | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        for name, part in (parts or {}).items():
            setattr(self, name, part)
        self.second_encoder = second_encoder
        self.projector = projector
        self.views = views
        self.separate_anchor = separate_anchor or second_encoder is not None
        self.pass_hooks = list(pass_hooks)
        self.dropout_off_views = tuple(dropout_off_views)
        self.aux_terms = dict(aux_terms or {})

    def _pass(
        self,
        encoder: Encoder,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        template: torch.Tensor | None,
    ) -> torch.Tensor:
        if self.training:
            for hook in self.pass_hooks:
                hook(encoder)
        return encoder(input_ids, attention_mask, with_mlp=True, template=template)

    def _groups(self) -> list[tuple[list[int], Encoder, bool]]:
        """(views, encoder, dropout off) for each pass over a row's views."""
        trained = [v for v in range(self.views) if v not in self.dropout_off_views]
        if not self.separate_anchor:
            groups = [(trained, self.encoder, False)]
        else:
            groups = [([0], self.encoder, False), (trained[1:], self.second_encoder or self.encoder, False)]
        if self.dropout_off_views:
            groups.append((list(self.dropout_off_views), self.encoder, True))
        return [g for g in groups if g[0]]

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, template: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The embeddings (rows x views, dim) of the flattened views, each group of views through its encoder
        (and the projector, when there is one)."""
        out = self._embed(input_ids, attention_mask, template)
        return out if self.projector is None else self.projector(out)

    def _embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, template: torch.Tensor | None
    ) -> torch.Tensor:
        groups = self._groups()
        if len(groups) == 1:
            return self.encoder(input_ids, attention_mask, with_mlp=True, template=template)
        view_of = torch.arange(input_ids.shape[0], device=input_ids.device) % self.views
        out = None
        for views, encoder, dropout_off in groups:
            chosen = torch.isin(view_of, torch.tensor(views, device=input_ids.device))
            ids, mask = input_ids[chosen], attention_mask[chosen]
            part = None if template is None else template[chosen]
            if dropout_off:
                was = encoder.training
                encoder.eval()
                try:
                    emb = encoder(ids, mask, with_mlp=True, template=part)
                finally:
                    encoder.train(was)
            else:
                emb = self._pass(encoder, ids, mask, part)
            if out is None:
                out = emb.new_empty(input_ids.shape[0], emb.shape[-1])
            out[chosen] = emb.to(out.dtype)
        return out

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        template: torch.Tensor | None = None,
        **aux_inputs: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, int]]]:
        """(embeddings, {auxiliary term name: (loss, count)}): :meth:`embed`, then each auxiliary term whose
        inputs (``NAME_input_ids``, ``NAME_labels``) are in ``aux_inputs``."""
        embeddings = self.embed(input_ids, attention_mask, template)
        terms: dict[str, tuple[torch.Tensor, int]] = {}
        for name, term in self.aux_terms.items():
            ids, labels = aux_inputs.get(f"{name}_input_ids"), aux_inputs.get(f"{name}_labels")
            if ids is not None:
                terms[name] = term(self, embeddings, ids, attention_mask, labels)
        return embeddings, terms
