"""Everything a run needs before its first step, in the order it is checked: the environment (processes,
device, precision), the inputs (training file, dev data, output directory), the model, the optimiser and
its schedule.

Each piece that can fail on the user's input fails here, before anything is written.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from simcse.core.errors import ConfigError, DataError
from simcse.core.runtime import Dist, autocast_for, choose_precision, enable_tf32, resolve_device
from simcse.data.sentence_files import TrainingData, read_training_file
from simcse.training import methods
from simcse.training.config import TrainConfig
from simcse.training.data import BatchPlan
from simcse.training.hf_adamw import HFAdamW
from simcse.training.model import SimCSEModel
from simcse.training.run_dir import find_resume_point


@dataclass
class Environment:
    """Where the run executes: this process among the others, its device, and its numeric precision."""

    dist: Dist
    device: torch.device
    precision: str
    autocast: contextlib.AbstractContextManager
    precision_reason: str = ""


def resolve(config: TrainConfig) -> Environment:
    """Every check that depends on the machine or on the processes (``TrainConfig.validate`` has checked
    the options alone), and the process-wide settings: threads, CUDA device, TF32."""
    if config.compile:
        from torch import _dynamo

        if config.compile_backend not in _dynamo.list_backends(exclude_tags=()):
            raise ConfigError(
                f"compile_backend {config.compile_backend!r} is not a torch.compile backend; "
                f"choose from {', '.join(_dynamo.list_backends())}"
            )
    dist = Dist.from_env(use_cuda=torch.cuda.is_available() and config.device != "cpu")
    device = resolve_device(config.device, dist.local_rank)
    chosen = choose_precision(config.precision, device)
    precision = chosen.name
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        if config.tf32:
            enable_tf32()
    if config.batch_size % dist.world_size:
        raise ConfigError(
            f"batch_size {config.batch_size} is not divisible by the {dist.world_size} processes"
        )
    if config.gradcache_chunk_size and config.gradcache_chunk_size >= config.batch_size // dist.world_size:
        raise ConfigError(
            "gradcache_chunk_size must be smaller than the per-process batch (batch_size / processes)"
        )
    return Environment(dist, device, precision, autocast_for(precision, device), chosen.reason)


@dataclass
class Inputs:
    """What the run reads: the training rows, views per row, the dev evaluator, the batch plan, and the
    output directory with the checkpoint to resume (None: a fresh start)."""

    data: TrainingData
    views: int
    evaluator: Any  # DevEvaluator | None
    geometry: Any  # GeometryEvaluator | None (geometry_steps)
    out: Path
    checkpoint: Path | None
    plan: BatchPlan
    total_steps: int
    augment: list  # the positive view's augmentation pieces (simcse.data.augment), models loaded
    loaded: dict[str, Any] = field(default_factory=dict)  # what each method read (a guide model), by its name


def read_inputs(config: TrainConfig, dist: Dist, resume: bool) -> Inputs:
    """Read and check every input of the run. Writes nothing."""
    data = read_training_file(resolve_train_file(config), config.max_train_samples)
    if config.max_train_samples and len(data) < config.max_train_samples and ".head" in Path(data.path).name:
        raise DataError(
            data.path,
            f"a sample of {config.train_file} with {len(data):,} rows, fewer than "
            f"max_train_samples {config.max_train_samples:,}; fetch the whole file with: "
            f"simcse data download {config.train_file}",
        )
    views = resolve_views(config, data)
    evaluator = None
    if config.dev_eval:
        from simcse.data.download import ensure_dataset
        from simcse.evaluation.dev import DevEvaluator

        senteval = None if config.dev_file else ensure_dataset("senteval", config.data_dir)
        evaluator = DevEvaluator(senteval, config.eval_batch_size, dev_file=config.dev_file or None)
        if dist.main:
            print(
                f"simcse: checkpoint selection on {evaluator.describe()} ({config.best_metric})",
                file=sys.stderr,
            )
    geometry = None
    if config.geometry_steps:
        from simcse.data.download import ensure_dataset
        from simcse.evaluation.dev import GeometryEvaluator

        geometry = GeometryEvaluator(ensure_dataset("senteval", config.data_dir), config.eval_batch_size)
    out, checkpoint = find_resume_point(config, resume, dist)
    plan = BatchPlan(len(data), config.batch_size, config.seed, config.shuffle, drop_last=dist.world_size > 1)
    if plan.steps_per_epoch == 0:
        rows = f"{len(data)} row{'' if len(data) == 1 else 's'}"
        if dist.world_size == 1:  # a last partial batch of 2+ rows is kept: only 0 or 1 row makes no batch
            raise DataError(data.path, f"{rows}: a contrastive batch needs at least 2 rows")
        raise DataError(
            data.path,
            f"{rows} make no full batch of {config.batch_size} rows (with {dist.world_size} processes the "
            "last partial batch is dropped); lower batch_size",
        )
    total_steps = config.max_steps or config.num_epochs * plan.steps_per_epoch
    from simcse.data.augment import parse_augment
    from simcse.modeling.names import DEFAULT_MODEL

    mlm_model = config.augment_mlm_model or config.model_name_or_path
    augment = parse_augment(
        config.augment, config.augment_thesaurus or None, None if mlm_model == DEFAULT_MODEL else mlm_model
    )
    loaded = {m.name: m.load_inputs(config) for m in methods.enabled(config)}
    return Inputs(
        data,
        views,
        evaluator,
        geometry,
        out,
        checkpoint,
        plan,
        total_steps,
        augment,
        {name: value for name, value in loaded.items() if value is not None},
    )


def resolve_train_file(config: TrainConfig) -> Path:
    """A path as given, else relative to the data directory; ``wiki1m`` and ``nli`` name the paper's files
    (downloaded when missing and the network is reachable); ``snli:NAME`` a file derived from the data
    directory's SNLI pairs (:mod:`simcse.data.nli_files`)."""
    from simcse.data.download import DATASETS, ensure_dataset, resolve_data_dir

    if config.train_file in DATASETS and config.train_file != "senteval":
        return ensure_dataset(config.train_file, config.data_dir, rows=config.max_train_samples)
    from simcse.data import nli_files

    if nli_files.is_derived(config.train_file):
        return nli_files.derived_file(config.train_file, resolve_data_dir(config.data_dir))
    path = Path(config.train_file).expanduser()
    if path.exists() or path.is_absolute():
        return path
    in_data_dir = resolve_data_dir(config.data_dir) / path
    return in_data_dir if in_data_dir.exists() else path


def resolve_views(config: TrainConfig, data: TrainingData) -> int:
    """Views per row: 2 for unsup (the sentence twice) and sup pairs, 3 or 4 with one or two hard-negative
    columns; plus what the methods add (SimCSE++'s sentence once more, without dropout)."""
    where = data.path
    if config.objective == "unsup" and data.columns != 1:
        raise DataError(
            where, f"objective unsup takes one sentence per row; this file has {data.columns} columns"
        )
    if config.positive != "self" and data.columns != 1:
        raise DataError(
            where,
            f"positive {config.positive} takes one sentence per line; this file has {data.columns} columns",
        )
    if config.dropout_mask == "shared" and data.columns != 1:
        raise DataError(
            where,
            f"dropout_mask shared is for one-sentence (unsup) rows; this file has {data.columns} columns",
        )
    if config.augment and data.columns != 1:
        raise DataError(
            where,
            "augment makes the positive view of one-sentence (unsup) rows; this file has "
            f"{data.columns} columns",
        )
    if config.objective == "sup" and data.columns == 1:
        raise DataError(where, "objective sup needs 2 columns (anchor, positive) or 3 (with a hard negative)")
    if config.hard_negative_weight != 1.0 and data.columns < 3:
        raise ConfigError("hard_negative_weight needs a hard-negative (third) column in the training file")
    enabled = methods.enabled(config)
    for method in enabled:
        method.check_rows(config, data)
    return max(2, data.columns) + sum(method.extra_views(config) for method in enabled)


def build_model(config: TrainConfig, views: int = 2) -> tuple[SimCSEModel, list[str]]:
    """The encoder (a fresh MLP with pooler cls) and what the run's methods add to it, in METHODS order
    (the LM head, DiffCSE's projection and discriminator, ...); ``encoders: two`` adds an independent copy
    of the encoder (its MLP too) for views 1.. of each row of ``views``. Also the lines to print about the
    parts (how each head was initialised)."""
    from simcse.modeling.encoder import Encoder
    from simcse.modeling.model_dir import position_limit, read_backbone

    enabled = methods.enabled(config)
    # torch.compile wants static shapes; packed execution has data-dependent ones.
    packed = {"auto": None if not config.compile else False, "on": True, "off": False}[config.packed]
    files = read_backbone(
        config.model_name_or_path,
        attn_implementation=config.attn_implementation,
        masked_lm=any(m.needs_masked_lm(config) for m in enabled),
    )
    limit = position_limit(files.backbone.config)
    if limit is not None and config.max_seq_len > limit:
        raise ConfigError(f"max_seq_len {config.max_seq_len} exceeds what {files.source} supports ({limit})")
    options = {key: value for m in enabled for key, value in m.encoder_options(config).items()}
    encoder = Encoder.from_backbone(files, config.pooler, config.mlp_only_train, None, packed, **options)
    for method in enabled:
        method.check_encoder(config, encoder, files, limit)
    if config.dropout is not None:
        from simcse.modeling.dropout import set_dropout

        if not set_dropout(encoder.backbone, config.dropout):
            raise ConfigError(f"dropout: {files.source} has no dropout layer to set")
    if config.packed == "on" and not encoder.packed:
        raise ConfigError(
            f"packed execution is not available for model type {files.backbone.config.model_type!r}"
        )
    parts, projector, notes = {}, None, []
    for method in enabled:  # in order: their initialisations draw from the seeded generator
        projector = method.projection(config, encoder) or projector
        parts.update(method.model_parts(config, files, encoder))
        notes += method.model_notes(config, files)
    second = copy.deepcopy(encoder) if config.encoders == "two" else None
    terms = dict(term for m in enabled if (term := m.aux_term(config)) is not None)
    dropout_off = tuple(v for m in enabled for v in m.dropout_off_views(config, views))
    hooks = [hook for m in enabled if (hook := m.pass_hook(config)) is not None]
    separate = any(m.separate_anchor(config) for m in enabled)
    model = SimCSEModel(encoder, views, second, separate, hooks, dropout_off, projector, parts, terms)
    return model, notes


def batch_inputs(config: TrainConfig, tokenizer: Any, device: torch.device) -> list[Any]:
    """What the run's methods add to each batch on the training thread (MLM's masked copy, DiffCSE's edit),
    built before anything is written (DiffCSE's generator is loaded and checked here)."""
    makers = (m.batch_inputs(config, tokenizer, device) for m in methods.enabled(config))
    return [maker for maker in makers if maker is not None]


def build_optimizer(
    config: TrainConfig, model: torch.nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW (by default the transformers 4.x form the original's Trainer used, :mod:`hf_adamw`), fused where
    torch has it; no weight decay on biases and LayerNorm weights (1-D parameters), as Hugging Face's Trainer."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    kwargs = {
        "lr": config.learning_rate,
        "betas": (config.adam_beta1, config.adam_beta2),
        "eps": config.adam_epsilon,
    }
    kind = HFAdamW if config.optimizer == "adamw_hf" else torch.optim.AdamW
    try:
        return kind(groups, fused=device.type in ("cuda", "cpu"), **kwargs)
    except (RuntimeError, TypeError):
        return kind(groups, foreach=True, **kwargs)


def build_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then linear decay to 0 (or constant): transformers' ``get_linear_schedule_with_warmup``
    (the original's), so the first warmup step has learning rate 0."""
    warmup = config.warmup_steps or int(math.ceil(config.warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if config.lr_scheduler == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
