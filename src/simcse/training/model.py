"""The module that is trained: the encoder, plus the MLM head when the auxiliary MLM loss is on."""

from __future__ import annotations

import torch
from torch import nn

from simcse.modeling.encoder import Encoder
from simcse.training.losses import mlm_loss


class SimCSEModel(nn.Module):
    """``forward(input_ids, attention_mask[, mlm_input_ids, mlm_labels])`` ->
    (sentence embeddings, MLM cross-entropy summed over masked tokens, number of masked tokens).

    The embeddings are computed first, then the MLM pass, so GradCache's replay of the random state
    reproduces the embedding pass's dropout masks.

    With ``second_encoder`` (``encoders: two``, the paper's Table 2) the sequences come row-major with
    ``views`` per row: view 0 (the anchor) goes through ``encoder``, the others through the second encoder,
    and the embeddings are put back in the batch's order. Only ``encoder`` is evaluated and saved.

    With ``dropout_range`` (LOW, HIGH) (``dropout_range``, S-SimCSE) the anchors and the other views are two
    passes, each under its own dropout rate drawn uniformly from [LOW, HIGH) from the global generator (so
    GradCache's replay and a resume draw the same rates).

    ``template`` (pooler prompt) is each sequence's template index, as the collator made it.
    """

    def __init__(
        self,
        encoder: Encoder,
        mlm_head: nn.Module | None = None,
        second_encoder: Encoder | None = None,
        views: int = 2,
        dropout_range: tuple[float, float] | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.mlm_head = mlm_head
        self.second_encoder = second_encoder
        self.views = views
        self.dropout_range = dropout_range

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

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, template: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.second_encoder is None and self.dropout_range is None:
            return self.encoder(input_ids, attention_mask, with_mlp=True, template=template)
        rows = input_ids.shape[0] // self.views
        anchor = torch.arange(rows, device=input_ids.device) * self.views
        others = torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        others[anchor] = False

        def part(select: torch.Tensor) -> torch.Tensor | None:
            return None if template is None else template[select]

        first = self._pass(self.encoder, input_ids[anchor], attention_mask[anchor], part(anchor))
        second = self._pass(self.second_encoder or self.encoder, input_ids[others], attention_mask[others],
                            part(others))  # fmt: skip
        out = first.new_empty(input_ids.shape[0], first.shape[-1])
        out[anchor] = first
        out[others] = second.to(first.dtype)
        return out

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mlm_input_ids: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        template: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        embeddings = self.embed(input_ids, attention_mask, template)
        if self.mlm_head is None or mlm_input_ids is None:
            return embeddings, embeddings.new_zeros(()), 0
        hidden = self.encoder.hidden_states(mlm_input_ids, attention_mask)[self.encoder.num_layers]
        mean, count = mlm_loss(self.mlm_head, hidden, mlm_labels)
        return embeddings, mean * count, count


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
