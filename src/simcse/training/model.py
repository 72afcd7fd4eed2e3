"""The module that is trained: the encoder, plus the MLM head when the auxiliary MLM loss is on and DiffCSE's
discriminator when replaced-token detection is on."""

from __future__ import annotations

import torch
from torch import nn

from simcse.modeling.encoder import Encoder
from simcse.training.losses import mlm_loss


class SimCSEModel(nn.Module):
    """``forward(input_ids, attention_mask[, mlm_input_ids, mlm_labels, rtd_input_ids, rtd_labels])`` ->
    (sentence embeddings, the auxiliary terms): ``{"mlm": (MLM cross-entropy summed over the masked tokens,
    their number)}`` when MLM inputs are given (and there is an MLM head), ``"rtd"`` likewise for DiffCSE's
    replaced-token detection (:mod:`simcse.training.diffcse`; the discriminator is conditioned on the
    embeddings, so its gradient reaches the encoder). An auxiliary term ``NAME`` takes the batch's
    ``NAME_input_ids`` and ``NAME_labels`` (-100: not scored), so a step normalises each over the batch.

    The embeddings are computed first, then the auxiliary passes, so GradCache's replay of the random state
    reproduces the embedding pass's dropout masks.

    With ``second_encoder`` (``encoders: two``, the paper's Table 2) the sequences come row-major with
    ``views`` per row: view 0 (the anchor) goes through ``encoder``, the others through the second encoder,
    and the embeddings are put back in the batch's order. Only ``encoder`` is evaluated and saved (the MLM
    head and the discriminator are trained and kept in resumable checkpoints only).

    With ``dropout_range`` (LOW, HIGH) (``dropout_range``, S-SimCSE) the anchors and the other views are two
    passes, each under its own dropout rate drawn uniformly from [LOW, HIGH) from the global generator (so
    GradCache's replay and a resume draw the same rates).

    With ``plain_views`` (SimCSE++'s ``negatives_without_dropout``) those views of each row are encoded in a
    pass of their own with dropout off (the encoder in eval mode: attention dropout too), with gradient.
    ``momentum`` (ESimCSE's queue, :class:`~simcse.training.negatives.MomentumQueue`) is kept here so that
    checkpoints hold it; it takes no part in the forward.

    With ``projector`` (``diffcse_batchnorm``) the embeddings of the whole batch go through it together
    (the encoder then has no MLP of its own); it is trained, never saved.

    ``template`` (pooler prompt) is each sequence's template index, as the collator made it.
    """

    def __init__(
        self,
        encoder: Encoder,
        mlm_head: nn.Module | None = None,
        second_encoder: Encoder | None = None,
        views: int = 2,
        dropout_range: tuple[float, float] | None = None,
        plain_views: tuple[int, ...] = (),
        discriminator: nn.Module | None = None,
        projector: nn.Module | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.mlm_head = mlm_head
        self.second_encoder = second_encoder
        self.views = views
        self.dropout_range = dropout_range
        self.plain_views = tuple(plain_views)
        self.momentum: nn.Module | None = None
        self.discriminator = discriminator
        self.projector = projector

    def _pass(
        self,
        encoder: Encoder,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        template: torch.Tensor | None,
    ) -> torch.Tensor:
        if self.dropout_range is not None and self.training:
            from simcse.modeling.dropout import set_dropout

            low, high = self.dropout_range
            set_dropout(encoder.backbone, low + (high - low) * float(torch.rand(())), record=False)
        return encoder(input_ids, attention_mask, with_mlp=True, template=template)

    def _groups(self) -> list[tuple[list[int], Encoder, bool]]:
        """(views, encoder, dropout off) for each pass over a row's views."""
        trained = [v for v in range(self.views) if v not in self.plain_views]
        if self.second_encoder is None and self.dropout_range is None:
            groups = [(trained, self.encoder, False)]
        else:
            groups = [([0], self.encoder, False), (trained[1:], self.second_encoder or self.encoder, False)]
        if self.plain_views:
            groups.append((list(self.plain_views), self.encoder, True))
        return [g for g in groups if g[0]]

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, template: torch.Tensor | None = None
    ) -> torch.Tensor:
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
        for views, encoder, plain in groups:
            chosen = torch.isin(view_of, torch.tensor(views, device=input_ids.device))
            ids, mask = input_ids[chosen], attention_mask[chosen]
            part = None if template is None else template[chosen]
            if plain:
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
        mlm_input_ids: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        rtd_input_ids: torch.Tensor | None = None,
        rtd_labels: torch.Tensor | None = None,
        template: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, int]]]:
        embeddings = self.embed(input_ids, attention_mask, template)
        terms: dict[str, tuple[torch.Tensor, int]] = {}
        if self.mlm_head is not None and mlm_input_ids is not None:
            hidden = self.encoder.hidden_states(mlm_input_ids, attention_mask)[self.encoder.num_layers]
            mean, count = mlm_loss(self.mlm_head, hidden, mlm_labels)
            terms["mlm"] = (mean * count, count)
        if self.discriminator is not None and rtd_input_ids is not None:
            terms["rtd"] = self.discriminator(rtd_input_ids, attention_mask, embeddings, rtd_labels)
        return embeddings, terms


def resolved_mlm_head(mlm_model: nn.Module, kind: str) -> str:
    """``original`` as what it means for this checkpoint: the original's ``lm_head`` module loads the
    pretrained head only where the checkpoint calls it ``lm_head`` (RoBERTa), not ``cls`` (BERT)."""
    if kind != "original":
        return kind
    return "untied" if any(name == "lm_head" for name, _ in mlm_model.named_children()) else "fresh"


def mlm_head_of(mlm_model: nn.Module, kind: str = "original") -> nn.Module:
    """The LM head of an ``AutoModelForMaskedLM`` (BERT's ``cls``, RoBERTa's ``lm_head``...).

    ``original`` (the default): what the original code trained, ``untied`` for RoBERTa-style checkpoints
    (head named ``lm_head``) and ``fresh`` for BERT-style ones (head named ``cls``).
    ``untied``: its vocabulary projection gets its own copy of the weights instead of sharing the input
    embeddings, as in the original code, whose ``lm_head`` module is not tied (for RoBERTa the checkpoint's
    ``lm_head.*`` weights load into it). ``fresh``: re-initialised and untied, which is what the original's
    BERT runs trained (BERT checkpoints name the head ``cls.predictions.*``, so the original's ``lm_head``
    found no weights; see princeton-nlp/SimCSE issue 179). ``tied``: as loaded, sharing the embeddings.
    """
    heads = [m for name, m in mlm_model.named_children() if name != mlm_model.base_model_prefix]
    if len(heads) != 1:
        raise ValueError(f"cannot find the LM head of {type(mlm_model).__name__}")
    head = heads[0]
    kind = resolved_mlm_head(mlm_model, kind)
    if kind == "tied":
        return head
    decoder = mlm_model.get_output_embeddings()
    if decoder is None or not any(decoder is m for m in head.modules()):
        raise ValueError(f"cannot find the vocabulary projection of {type(mlm_model).__name__}'s LM head")
    old_bias = decoder.bias
    decoder.weight = nn.Parameter(decoder.weight.detach().clone())
    if old_bias is not None:
        decoder.bias = nn.Parameter(old_bias.detach().clone())
        for module in head.modules():  # BERT and RoBERTa keep the output bias twice: keep it one
            if module is not decoder and getattr(module, "bias", None) is old_bias:
                module.bias = decoder.bias
    if kind == "fresh":
        _initialise(head, float(getattr(mlm_model.config, "initializer_range", 0.02)))
    return head


@torch.no_grad()
def _initialise(head: nn.Module, std: float) -> None:
    """BERT's initialisation: linear weights N(0, std), biases 0, layer norms 1 and 0."""
    for module in head.modules():
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
        for name, param in module.named_parameters(recurse=False):
            if name == "bias":
                param.zero_()
