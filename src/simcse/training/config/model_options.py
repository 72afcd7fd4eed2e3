"""The model a run trains: the starting checkpoint, the pooler, SimCSE's MLP, the dropout rate."""

from __future__ import annotations

from dataclasses import dataclass

from simcse.core.options import option
from simcse.modeling.names import EMBEDDED_NAME, POOLERS

GROUP = "model"


@dataclass
class ModelOptions:
    """The model group of :class:`~simcse.training.config.TrainConfig`; each field's help documents it."""

    model_name_or_path: str | None = option(
        None, f"HF id or directory; none = the embedded {EMBEDDED_NAME}", GROUP
    )
    pooler: str = option("cls", " | ".join(POOLERS), GROUP, choices=POOLERS)
    mlp_only_train: bool = option(
        False,
        "train with the MLP (pooler cls or prompt), encode without it (the paper's unsup setting)",
        GROUP,
    )
    dropout: float | None = option(
        None,
        "dropout rate of every dropout layer of the encoder (hidden and attention) in training; none = the "
        "checkpoint's own (0.1 for BERT); the paper's Table 3 varies it",
        GROUP,
    )


def problems(c: ModelOptions) -> list[str]:
    """The model options' problems: ``mlp_only_train`` without an MLP pooler, dropout outside [0, 1)."""
    found = []
    if c.mlp_only_train and c.pooler not in ("cls", "prompt"):
        found.append("mlp_only_train needs pooler 'cls' or 'prompt' (the poolers with an MLP)")
    if c.dropout is not None and not 0 <= c.dropout < 1:
        found.append(f"dropout must be in [0, 1) or none (the checkpoint's own), got {c.dropout}")
    return found
