"""How the weights are updated: the batch (and GradCache's chunks), the length of the run, AdamW and its
schedule, clipping, the numeric precision, the seed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from simcse.core.options import must_be_in_unit_interval, must_be_non_negative, must_be_positive, option
from simcse.core.precision_options import PRECISIONS

GROUP = "optimisation"
SCHEDULERS = ("linear", "constant")
OPTIMIZERS = ("adamw_hf", "adamw")


@dataclass
class OptimisationOptions:
    """The optimisation group of :class:`~simcse.training.config.TrainConfig`; each field's help line
    documents it."""

    batch_size: int = option(
        64, "global: sentences (rows) per step over all processes = in-batch negatives", GROUP
    )
    gradcache_chunk_size: int = option(
        0, "> 0: cached-gradient large batches, rows per chunk per process", GROUP
    )
    gradient_accumulation_steps: int = option(
        1, "only 1: accumulation does not add negatives (use GradCache)", GROUP
    )
    num_epochs: int = option(1, "passes over the training file", GROUP)
    max_steps: int = option(0, "> 0 overrides num_epochs", GROUP)
    learning_rate: float = option(3e-5, "AdamW peak learning rate", GROUP)
    lr_scheduler: str = option(
        "linear", "linear (decay to 0 after warmup) | constant", GROUP, choices=SCHEDULERS
    )
    warmup_steps: int = option(0, "linear warmup steps", GROUP)
    warmup_ratio: float = option(0.0, "warmup as a share of all steps (instead of warmup_steps)", GROUP)
    weight_decay: float = option(0.0, "AdamW weight decay (never on biases and LayerNorm weights)", GROUP)
    adam_beta1: float = option(0.9, "AdamW beta1", GROUP)
    adam_beta2: float = option(0.999, "AdamW beta2", GROUP)
    adam_epsilon: float = option(1e-8, "AdamW epsilon", GROUP)
    optimizer: str = option(
        "adamw_hf",
        "adamw_hf: the transformers 4.x AdamW the original's Trainer used (epsilon added before the bias "
        "correction, weight decay after the update) | adamw: torch's AdamW",
        GROUP,
        choices=OPTIMIZERS,
    )
    max_grad_norm: float = option(1.0, "gradient clipping norm; 0 = no clipping", GROUP)
    precision: str = option(
        "auto",
        "auto (GPU: bf16, else fp16 + scaling; CPU: bf16 autocast where it has AMX or AVX512-BF16, else "
        "fp32) | fp32 | bf16 | fp16",
        GROUP,
        choices=PRECISIONS,
    )
    seed: int = option(42, "seeds the MLP, dropout, shuffling and masking", GROUP)


def problems(c: Any) -> list[str]:
    """The optimisation options' problems: gradient accumulation (refused: it adds no in-batch negatives), the
    batch, the run's length, warm-up, AdamW's hyperparameters and clipping."""
    found = []
    if c.gradient_accumulation_steps != 1:
        found.append(
            "gradient_accumulation_steps must be 1: accumulating gradients over small batches does not add "
            "in-batch negatives, so it does not train like a large batch. For a large batch that does not fit "
            "in memory set batch_size to the full size and gradcache_chunk_size to what fits (GradCache)."
        )
    found += must_be_positive(c, "learning_rate")
    if c.batch_size < 2:
        found.append(f"batch_size must be at least 2 (in-batch negatives), got {c.batch_size}")
    found += must_be_in_unit_interval(c, "warmup_ratio")
    if c.warmup_steps and c.warmup_ratio:
        found.append("set warmup_steps or warmup_ratio, not both")
    found += must_be_non_negative(
        c, "num_epochs", "max_steps", "gradcache_chunk_size", "warmup_steps", "seed"
    )
    if c.num_epochs == 0 and c.max_steps == 0:
        found.append("set num_epochs or max_steps")
    if not (0 <= c.weight_decay < math.inf and c.max_grad_norm >= 0):
        found.append("weight_decay and max_grad_norm must be >= 0")
    if not (0 <= c.adam_beta1 < 1 and 0 <= c.adam_beta2 < 1 and c.adam_epsilon > 0):
        found.append("adam_beta1 and adam_beta2 must be in [0, 1) and adam_epsilon > 0")
    if c.gradcache_chunk_size and c.gradcache_chunk_size >= c.batch_size:
        found.append(
            f"gradcache_chunk_size ({c.gradcache_chunk_size}) must be smaller than batch_size "
            f"({c.batch_size}); set it to 0 to train the batch in one pass"
        )
    return found
