"""Poolers: how a sequence of token states becomes one sentence vector.

Hidden-state indices follow Hugging Face: ``hidden_states[0]`` is the embedding layer's output,
``hidden_states[i]`` the output of transformer layer ``i``, ``hidden_states[-1]`` the last layer.

- ``cls``: the [CLS] state of the last layer followed by a Linear+Tanh MLP (the MLP lives in :class:`MLP`).
- ``cls_before_pooler``: the [CLS] state of the last layer, no MLP.
- ``avg``: mean of the last layer's token states over non-padding tokens.
- ``avg_top2``: mean over tokens of the average of the last two layers.
- ``avg_first_last``: mean over tokens of the average of the FIRST TRANSFORMER LAYER (``hidden_states[1]``,
  not the embedding output ``hidden_states[0]``) and the last layer, as in SimCSE's released code.
- ``avg_first_last_emb``: the same with the embedding output ``hidden_states[0]`` as the first layer: what
  the paper's baseline rows ("first-last avg.") were computed with before the released code changed it.
- ``prompt``: the last layer's state at a template's [MASK] (PromptBERT; :mod:`simcse.modeling.prompt`,
  which the encoder calls instead of :func:`pool`).
"""

from __future__ import annotations

import torch
from torch import nn

from simcse.core.errors import SimCSEError
from simcse.modeling.names import POOLERS


def layers_needed(pooler: str, num_layers: int) -> tuple[int, ...]:
    """Hidden-state indices a pooler reads (0 = embeddings, num_layers = last layer)."""
    if pooler in ("cls", "cls_before_pooler", "avg", "prompt"):
        return (num_layers,)
    if pooler == "avg_top2":
        return (num_layers - 1, num_layers)
    if pooler == "avg_first_last":
        return (1, num_layers)
    if pooler == "avg_first_last_emb":
        return (0, num_layers)
    raise ValueError(f"unknown pooler {pooler!r}; choose one of {', '.join(POOLERS)}")


def masked_mean(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of ``states`` (batch, length, dim) over the positions where ``attention_mask`` is 1."""
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def pool(
    pooler: str, hidden: dict[int, torch.Tensor], attention_mask: torch.Tensor, num_layers: int
) -> torch.Tensor:
    """Pool token states (``hidden`` maps a layer index to (batch, length, dim)) into (batch, dim)."""
    if pooler in ("cls", "cls_before_pooler"):
        return hidden[num_layers][:, 0]
    if pooler == "avg":
        return masked_mean(hidden[num_layers], attention_mask)
    first, last = layers_needed(pooler, num_layers)
    return masked_mean((hidden[first] + hidden[last]) / 2.0, attention_mask)


class MLP(nn.Module):
    """SimCSE's projection head on top of [CLS]: Linear(dim, dim) followed by Tanh."""

    def __init__(self, dim: int, init_std: float = 0.02):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        nn.init.normal_(self.dense.weight, std=init_std)
        nn.init.zeros_(self.dense.bias)
        self.activation = nn.Tanh()

    @classmethod
    def from_state(cls, dim: int, state: dict[str, torch.Tensor], where: str) -> MLP:
        """An MLP holding saved weights (``dense.weight``, ``dense.bias``); ``where`` names their source."""
        mlp = cls(dim)
        try:
            mlp.dense.load_state_dict({"weight": state["dense.weight"], "bias": state["dense.bias"]})
        except (KeyError, RuntimeError) as e:
            raise SimCSEError(f"{where}: MLP weights do not fit a {dim}-dim model ({e})") from e
        return mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``tanh(dense(x))``."""
        return self.activation(self.dense(x))
