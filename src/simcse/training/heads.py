"""The modules a run trains beside the encoder and never saves with it: the MLM loss's LM head, DiffCSE's
replaced-token discriminator and its BatchNorm projection.

- :func:`mlm_head_of` takes the LM head of a masked-language model as ``mlm_head`` asks (the original code's
  head, an untied or fresh copy, or the tied one);
- :class:`Discriminator` is a second transformer, initialised from the same pretrained encoder, whose [CLS]
  input (the embedding layer's output at position 0, the original's ``cls_input``) is replaced by the
  sentence embedding; a linear head predicts replaced vs original for every token. Its cross-entropy is
  summed over the scored tokens and returned with their count, like the MLM term, so GradCache normalises
  it over the whole batch. The gradient reaches the sentence encoder through the embedding.
- :class:`BatchNormProjection` (``diffcse_batchnorm``) is DiffCSE's two-layer projection with batch
  normalisation (its ``--batchnorm``, used for its BERT STS model) in place of SimCSE's Linear+Tanh MLP,
  over the [CLS] state while training only (``mlp_only_train``), so never saved.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from simcse.core.errors import ConfigError
from simcse.training.masking import IGNORE


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


class Discriminator(nn.Module):
    """``forward(edited_ids, attention_mask, sentence_embeddings, labels)`` -> (cross-entropy summed over the
    scored tokens, their number): replaced-token detection conditioned on the sentence embedding.

    ``backbone``: a copy of the pretrained encoder's transformer (any HF model with an ``embeddings``
    module); the embedding layer's output at position 0 is replaced by the sentence embedding, so every
    token attends to it (the original's ``cls_input``).
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        embeddings = getattr(backbone, "embeddings", None)
        if not isinstance(embeddings, nn.Module):
            raise ConfigError(
                f"diffcse_generator: model type {backbone.config.model_type!r} has no embeddings module to "
                "condition the discriminator on"
            )
        self.backbone = backbone
        self.head = nn.Linear(int(backbone.config.hidden_size), 2)
        self._condition: torch.Tensor | None = None
        embeddings.register_forward_hook(self._put_condition)

    def _put_condition(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if self._condition is None:
            return None
        first = self._condition.to(output.dtype).unsqueeze(1)
        return torch.cat([first, output[:, 1:]], dim=1)

    def forward(
        self,
        edited_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sentence_embeddings: torch.Tensor,
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, int]:
        """(replaced-token-detection cross-entropy summed over the scored tokens, their number) for
        ``edited_ids``, with ``sentence_embeddings`` in place of the embedding output at position 0;
        ``labels`` -100 are not scored."""
        if sentence_embeddings.shape[-1] != self.head.in_features:
            raise ValueError(
                f"the sentence embedding has {sentence_embeddings.shape[-1]} dimensions, the discriminator "
                f"{self.head.in_features}"
            )
        self._condition = sentence_embeddings
        try:
            hidden = self.backbone(input_ids=edited_ids, attention_mask=attention_mask).last_hidden_state
        finally:
            self._condition = None
        scored = labels != IGNORE
        count = int(scored.sum())
        if count == 0:
            return hidden.sum() * 0.0 + self.head.weight.sum() * 0.0, 0
        logits = self.head(hidden[scored]).float()
        return F.cross_entropy(logits, labels[scored], reduction="sum"), count


class BatchNormProjection(nn.Module):
    """Linear(d, 2d) - BatchNorm - ReLU - Linear(2d, d) - BatchNorm without affine parameters, no biases (the
    original's ``ProjectionMLP``); linear weights N(0, ``init_std``) as Hugging Face initialises them. The
    statistics are the whole batch's (every view of every row in one call), so it needs one pass per batch."""

    def __init__(self, dim: int, init_std: float = 0.02):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, 2 * dim, bias=False),
            nn.BatchNorm1d(2 * dim),
            nn.ReLU(),
            nn.Linear(2 * dim, dim, bias=False),
            nn.BatchNorm1d(dim, affine=False),
        )
        for module in self.net:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The projection of ``x`` (the whole batch's embeddings)."""
        return self.net(x)
