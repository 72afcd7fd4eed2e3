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
    """

    def __init__(self, encoder: Encoder, mlm_head: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.mlm_head = mlm_head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mlm_input_ids: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        embeddings = self.encoder(input_ids, attention_mask, with_mlp=True)
        if self.mlm_head is None or mlm_input_ids is None:
            return embeddings, embeddings.new_zeros(()), 0
        hidden = self.encoder.hidden_states(mlm_input_ids, attention_mask)[self.encoder.num_layers]
        mean, count = mlm_loss(self.mlm_head, hidden, mlm_labels)
        return embeddings, mean * count, count


def mlm_head_of(mlm_model: nn.Module) -> nn.Module:
    """The LM head of an ``AutoModelForMaskedLM`` (BERT's ``cls``, RoBERTa's ``lm_head``...)."""
    heads = [m for name, m in mlm_model.named_children() if name != mlm_model.base_model_prefix]
    if len(heads) != 1:
        raise ValueError(f"cannot find the LM head of {type(mlm_model).__name__}")
    return heads[0]
