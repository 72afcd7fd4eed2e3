"""The training loop, readable top to bottom.

train(config):
  1. check everything that can fail on input before writing anything: config, training file, dev data,
     and the model (encoder + MLP [+ MLM head]);
  2. prepare the output directory (or find the checkpoint to resume);
  3. AdamW, linear schedule, loss scaler (and the resumed state);
  4. loop: batch -> forward (one pass, each sentence twice for unsup) -> contrastive loss [+ MLM] ->
     backward (plain or GradCache) -> clip -> step; dev evaluation every ``eval_steps`` keeps the best
     model; a resumable checkpoint every ``save_steps``;
  5. write the best model to the output directory and evaluate it on the test sets.

Performance switches (all in TrainConfig): ``precision`` (bf16 / fp16 autocast, fp32), ``packed``
(unpadded BERT execution), ``attn_implementation`` (SDPA), ``compile``, ``num_threads``, ``fast_dropout``
(CPU dropout masks from cheaper random draws), ``tf32`` (TF32 matmuls on GPUs, on by default). Always on:
fused AdamW where the device has it; batches collated in a background thread into pinned memory and
copied with ``non_blocking``; the contrastive similarities and cross-entropy in fp32 under autocast.
Defaults per device (``precision auto``): bf16 on GPUs that have it, else fp16 with loss scaling; fp32 on
CPUs. ``compile`` pads every batch to ``max_seq_len`` so one graph serves the whole run.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError

from simcse import __version__
from simcse.checkpoint import (
    last_good_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    write_error_reason,
)
from simcse.config import TrainConfig
from simcse.data import BatchPlan, Collator, MLMMasker, Prefetcher, TrainingData, read_training_file
from simcse.dropout import use_fast_dropout
from simcse.encoder import Encoder
from simcse.errors import ConfigError, DataError, SimCSEError
from simcse.files import replace_directory
from simcse.gradcache import gradcache_step
from simcse.losses import ContrastiveLoss
from simcse.model import SimCSEModel, mlm_head_of

BEST_DIR = "checkpoints/best"


class TrainingError(SimCSEError):
    """Training had to stop (non-finite loss, failed write); the last good checkpoint is kept."""


@dataclass
class TrainerState:
    global_step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    dev_before: dict[str, float] | None = None
    last_eval_step: int | None = None


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int
    best_metric: float | None
    best_step: int | None
    dev_before: dict[str, float] | None
    dev_best: dict[str, float] | None
    test: dict | None


# ---------------------------------------------------------------------------------------------- setup
@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_distributed(device_pref: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_pref != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(pref: str, ctx: Dist) -> torch.device:
    if pref == "cpu" or (pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {pref!r} asked for but CUDA is not available")
    if pref.startswith("cuda:"):
        return torch.device(pref)
    return torch.device("cuda", ctx.local_rank)


def resolve_precision(pref: str, device: torch.device) -> str:
    if pref != "auto":
        if pref == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision bf16 is not supported on this GPU; use fp16 (with loss scaling)")
        return pref
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def enable_tf32() -> None:
    """TF32 tensor cores for fp32 matmuls and convolutions (Ampere and later; no effect elsewhere)."""
    if hasattr(torch.backends, "fp32_precision"):  # torch >= 2.9: the legacy allow_tf32 flags are deprecated
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_train_file(config: TrainConfig) -> Path:
    """A path as given, else relative to the data directory; ``wiki1m`` and ``nli`` name the paper's files
    (downloaded when missing and the network is reachable)."""
    from simcse.download import DATASETS, ensure_dataset, resolve_data_dir

    if config.train_file in DATASETS and config.train_file != "senteval":
        return ensure_dataset(config.train_file, config.data_dir)
    path = Path(config.train_file).expanduser()
    if path.exists() or path.is_absolute():
        return path
    in_data_dir = resolve_data_dir(config.data_dir) / path
    return in_data_dir if in_data_dir.exists() else path


def resolve_views(config: TrainConfig, data: TrainingData) -> int:
    """Views per row: 2 for unsup (the sentence twice) and sup pairs, 3 with a hard-negative column."""
    where = data.path
    if config.objective == "unsup" and data.columns != 1:
        raise DataError(
            where, f"objective unsup takes one sentence per row; this file has {data.columns} columns"
        )
    if config.objective == "sup" and data.columns == 1:
        raise DataError(where, "objective sup needs 2 columns (anchor, positive) or 3 (with a hard negative)")
    if config.hard_negative_weight != 1.0 and data.columns != 3:
        raise ConfigError("hard_negative_weight needs a third (hard negative) column in the training file")
    return 2 if data.columns <= 2 else 3


def find_resume_point(config: TrainConfig, resume: bool, ctx: Dist) -> tuple[Path, Path | None]:
    """The output directory and the checkpoint to resume, refusing to touch another run's directory.
    Writes nothing."""
    out = Path(config.output_dir).expanduser()
    checkpoint = latest_checkpoint(out, ctx.world_size) if resume and out.exists() else None
    if checkpoint is not None:
        saved = out / "train_config.yaml"
        if saved.exists():
            _check_resume_compatible(TrainConfig.from_yaml(saved), config, saved)
        return out, checkpoint
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: output_dir is a file")
    if out.exists() and any(out.iterdir()) and not resume and not config.overwrite_output_dir:
        raise ConfigError(
            f"{out}: output directory is not empty; pass --resume to continue that run, "
            "--overwrite_output_dir true to replace it, or choose another --output_dir"
        )
    return out, None


def prepare_output_dir(config: TrainConfig, out: Path, resume: bool, ctx: Dist) -> None:
    if resume and ctx.main:
        print(f"simcse: no checkpoint to resume in {out}; starting from scratch", file=sys.stderr)
    ctx.barrier()
    if ctx.main:
        if out.exists() and config.overwrite_output_dir and not resume:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    ctx.barrier()


RESUME_KEYS = ("model_name_or_path", "train_file", "batch_size", "seed", "objective", "pooler", "max_seq_len",
               "shuffle", "max_train_samples", "do_mlm", "mlp_only_train")  # fmt: skip


def _check_resume_compatible(saved: TrainConfig, new: TrainConfig, path: Path) -> None:
    for key in RESUME_KEYS:
        if getattr(saved, key) != getattr(new, key):
            raise ConfigError(
                f"{path}: cannot resume with {key}={getattr(new, key)!r}, the run was started with "
                f"{getattr(saved, key)!r}"
            )


def build_model(config: TrainConfig) -> tuple[SimCSEModel, bool | None]:
    """Encoder with a fresh MLP (pooler cls) and, with do_mlm, the checkpoint's LM head."""
    from simcse.model_files import load_backbone, position_limit

    # torch.compile wants static shapes; packed execution has data-dependent ones.
    packed = {"auto": None if not config.compile else False, "on": True, "off": False}[config.packed]
    backbone, tokenizer, info = load_backbone(
        config.model_name_or_path, attn_implementation=config.attn_implementation, masked_lm=config.do_mlm
    )
    limit = position_limit(backbone.config)
    if limit is not None and config.max_seq_len > limit:
        raise ConfigError(
            f"max_seq_len {config.max_seq_len} exceeds what {info['source']} supports ({limit})"
        )
    encoder = Encoder.from_backbone(
        backbone, tokenizer, info, config.pooler, config.mlp_only_train, None, packed
    )
    if config.packed == "on" and not encoder.packed:
        raise ConfigError(f"packed execution is not available for model type {backbone.config.model_type!r}")
    head = mlm_head_of(info["mlm_model"]) if config.do_mlm else None
    return SimCSEModel(encoder, head), info.get("mlm_head_pretrained")


def build_optimizer(
    config: TrainConfig, model: torch.nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and LayerNorm weights (1-D parameters), as Hugging Face's Trainer."""
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
    try:
        return torch.optim.AdamW(groups, fused=device.type in ("cuda", "cpu"), **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, foreach=True, **kwargs)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    warmup = config.warmup_steps or int(math.ceil(config.warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1) if warmup else 1.0
        if config.lr_scheduler == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class MetricsLog:
    """metrics.jsonl (always) and TensorBoard (when installed and enabled); only on the main process."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self.file = (out / "metrics.jsonl").open("a", encoding="utf-8") if enabled else None
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                self.tb = None

    def log(self, step: int, values: dict[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": step, "kind": prefix, "time": round(time.time(), 3), **values}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None


# ---------------------------------------------------------------------------------------------- train
def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train SimCSE as configured; see the module docstring for the steps."""
    config.validate()
    ctx = init_distributed(config.device)
    device = resolve_device(config.device, ctx)
    precision = resolve_precision(config.precision, device)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        if config.tf32:
            enable_tf32()
    if config.batch_size % ctx.world_size:
        raise ConfigError(
            f"batch_size {config.batch_size} is not divisible by the {ctx.world_size} processes"
        )
    if config.gradcache_chunk_size and config.gradcache_chunk_size >= config.batch_size // ctx.world_size:
        raise ConfigError(
            "gradcache_chunk_size must be smaller than the per-process batch (batch_size / processes)"
        )

    # 1. everything that can fail on input, before anything is written
    data = read_training_file(resolve_train_file(config), config.max_train_samples)
    views = resolve_views(config, data)
    evaluator = None
    if config.dev_eval:
        from simcse.download import ensure_dataset
        from simcse.evaluation.dev import DevEvaluator

        evaluator = DevEvaluator(ensure_dataset("senteval", config.data_dir), config.eval_batch_size)
    out, checkpoint = find_resume_point(config, resume, ctx)
    plan = BatchPlan(len(data), config.batch_size, config.seed, config.shuffle, drop_last=ctx.world_size > 1)
    if plan.steps_per_epoch == 0:
        raise DataError(
            data.path, f"{len(data)} rows make no batch of {config.batch_size // ctx.world_size}+"
        )
    total_steps = config.max_steps or config.num_epochs * plan.steps_per_epoch

    seed_everything(config.seed)
    model, mlm_head_pretrained = build_model(config)

    # 2. output directory
    if checkpoint is None:
        prepare_output_dir(config, out, resume, ctx)

    # 3. optimiser, schedule, resumed state
    model.to(device)
    if config.fast_dropout and device.type == "cpu":
        use_fast_dropout(model.encoder.backbone)
    if ctx.main and config.do_mlm and not mlm_head_pretrained:
        print("simcse: the checkpoint has no MLM head; it starts freshly initialised", file=sys.stderr)
    optimizer = build_optimizer(config, model, device)
    scheduler = build_scheduler(config, optimizer, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    loss_fn = ContrastiveLoss(config.temperature, config.hard_negative_weight)
    # the collator's own tokenizer copy: it runs in the prefetch thread while the dev evaluation may be
    # tokenising, and a fast tokenizer must not be used from two threads at once ("Already borrowed")
    collate = Collator(copy.deepcopy(model.encoder.tokenizer), config.max_seq_len, views,
                       pad_to_length=config.max_seq_len if config.compile else None)  # fmt: skip
    masker = MLMMasker(model.encoder.tokenizer, config.mlm_probability) if config.do_mlm else None
    autocast = autocast_for(precision, device)
    state = TrainerState()
    if checkpoint is not None:
        saved = load_checkpoint(checkpoint, model, optimizer, ctx.rank)
        scheduler.load_state_dict(saved.pop("scheduler"))
        scaler.load_state_dict(saved.pop("scaler"))
        state = TrainerState(**saved)
        if ctx.main:
            print(f"simcse: resuming from {checkpoint} (step {state.global_step})", file=sys.stderr)
    forward = model
    if ctx.world_size > 1:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        forward = torch.compile(forward, backend=config.compile_backend)
    log = MetricsLog(out, ctx.main, config.tensorboard)

    def evaluate_dev(step: int) -> dict[str, float] | None:
        scores = None
        if ctx.main and evaluator is not None:
            scores = evaluator(model.encoder)
            log.log(step, scores, "eval")
        ctx.barrier()
        return scores

    def save_best(step: int, scores: dict[str, float]) -> None:
        metric = scores[config.metric_for_best_model]
        if state.best_metric is None or metric > state.best_metric:
            state.best_metric, state.best_step = metric, step
            if ctx.main:
                with _model_write_errors(out, "the best model", step):
                    model.encoder.save(out / BEST_DIR, extra=run_facts(config, data, views, state, scores))

    if ctx.main:
        describe_run(config, data, views, total_steps, device, precision, ctx, model.encoder)
    if evaluator is not None and state.dev_before is None and config.eval_before_training:
        state.dev_before = evaluate_dev(0)
        if ctx.main:
            print(f"simcse: dev before training: {format_scores(state.dev_before)}", file=sys.stderr)

    # 4. the loop
    progress = None
    if ctx.main and config.progress_bar:
        from tqdm.auto import tqdm

        progress = tqdm(
            total=total_steps, initial=state.global_step, desc="train", unit="step", dynamic_ncols=True
        )
    batches = Prefetcher(plan.iterate(state.epoch, state.step_in_epoch, ctx.rank, ctx.world_size), data.rows,
                         collate, pin_memory=device.type == "cuda")  # fmt: skip
    window_rows, window_start, window_loss, window_steps = 0, time.perf_counter(), 0.0, 0
    model.train()
    try:
        while state.global_step < total_steps:
            epoch, step_in_epoch, rows, batch = next(batches)
            if masker is not None:  # here, not in the prefetch thread: it draws from the global generator
                batch["mlm_input_ids"], batch["mlm_labels"] = masker(
                    batch["input_ids"], batch["attention_mask"]
                )
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            if config.gradcache_chunk_size:
                cl, mlm = gradcache_step(
                    forward, batch, views, config.gradcache_chunk_size, loss_fn, config.mlm_weight, device,
                    autocast, scaler.scale, getattr(forward, "no_sync", contextlib.nullcontext),
                )  # fmt: skip
                loss = cl + config.mlm_weight * mlm
            else:
                with autocast:
                    emb, mlm_sum, masked = forward(
                        batch["input_ids"],
                        batch["attention_mask"],
                        batch.get("mlm_input_ids"),
                        batch.get("mlm_labels"),
                    )
                cl = loss_fn(emb.float().view(-1, views, emb.shape[-1]))
                mlm = mlm_sum.float() / max(masked, 1)
                loss = cl + config.mlm_weight * mlm if config.do_mlm else cl
                scaler.scale(loss).backward()
            grad_norm = None
            if config.max_grad_norm:
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            finite = [torch.isfinite(loss.detach())]
            if not scaler.is_enabled():  # fp16's scaler skips a step with inf/NaN gradients by itself
                if grad_norm is None:
                    grad_norm = torch.nn.utils.get_total_norm(
                        [p.grad for p in model.parameters() if p.grad is not None]
                    )
                finite.append(torch.isfinite(grad_norm).to(loss.device))
            finite = torch.stack(finite).float()
            if ctx.world_size > 1:  # all processes stop together: a lone raise would leave the others waiting
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            ok = finite.bool().tolist()  # [loss finite, gradient finite]: the step's one host sync
            if not ok[0]:
                value = (
                    loss.item()
                    if ctx.world_size == 1
                    else f"not finite on a process (here {loss.item():.4g})"
                )
                raise TrainingError(
                    f"loss is {value} at step {state.global_step + 1}; stopping. The last good checkpoint is "
                    f"kept in {out / 'checkpoints'}; lower the learning rate or use precision fp32/bf16"
                )
            if not all(ok):
                raise TrainingError(
                    f"gradient norm is {grad_norm.item()} (loss {loss.item():.4g}) at step "
                    f"{state.global_step + 1}; stopping before the weights are updated. The last good "
                    f"checkpoint is kept in {out / 'checkpoints'}; lower the learning rate or check the model"
                )
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            state.global_step += 1
            state.epoch, state.step_in_epoch = epoch, step_in_epoch + 1
            if state.step_in_epoch >= plan.steps_per_epoch:
                state.epoch, state.step_in_epoch = epoch + 1, 0
            window_rows += len(rows) * ctx.world_size
            window_loss += loss.detach()  # summed on the device: no sync until it is logged
            window_steps += 1
            step = state.global_step
            if progress is not None:
                progress.update(1)
            if step % max(config.logging_steps, 1) == 0 or step == total_steps:
                elapsed = time.perf_counter() - window_start
                record = {
                    "loss": float(window_loss) / window_steps,
                    "lr": scheduler.get_last_lr()[0],
                    "sentences_per_s": window_rows / max(elapsed, 1e-9),
                    "epoch": state.epoch + state.step_in_epoch / plan.steps_per_epoch,
                }
                if config.do_mlm:
                    record["mlm_loss"] = mlm.item()
                log.log(step, record)
                if progress is not None:
                    progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                         sent_s=f"{record['sentences_per_s']:.0f}")  # fmt: skip
                window_rows, window_start, window_loss, window_steps = 0, time.perf_counter(), 0.0, 0
            if evaluator is not None and config.eval_steps and step % config.eval_steps == 0:
                scores = evaluate_dev(step)
                state.last_eval_step = step
                save_best(step, _broadcast(scores, ctx))
                if progress is not None:
                    progress.write(f"step {step}: dev {format_scores(scores)} (best {state.best_metric:.2f})")
            if config.save_steps and step % config.save_steps == 0 and step < total_steps:
                save_state(
                    out, step, model, optimizer, scheduler, scaler, state, ctx, config.save_total_limit
                )
    except BaseException:
        log.close()
        raise
    finally:
        batches.close()
        if progress is not None:
            progress.close()

    # 5. the final model
    try:
        if evaluator is not None and state.last_eval_step != state.global_step:
            scores = evaluate_dev(state.global_step)
            state.last_eval_step = state.global_step
            save_best(state.global_step, _broadcast(scores, ctx))
        result = TrainResult(
            out, state.global_step, state.best_metric, state.best_step, state.dev_before, None, None
        )
        if ctx.main:
            with _model_write_errors(out, "the final model", state.global_step):
                result = finish(config, out, model, data, views, state, log)
    finally:
        log.close()
    ctx.barrier()
    if ctx.world_size > 1:
        dist.destroy_process_group()
    return result


def _broadcast(scores: dict[str, float] | None, ctx: Dist) -> dict[str, float]:
    if ctx.world_size == 1:
        return scores
    box = [scores]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def _model_write_errors(out: Path, what: str, step: int):
    """A failed model write (full disk...) becomes a one-line TrainingError. The writers remove their own
    half-written temporary files, so what was in the output directory before stays as it was."""
    try:
        yield
    except (OSError, SafetensorError) as e:
        reason = write_error_reason(e)
        if reason is None:
            raise
        where = getattr(e, "filename", None) or out
        raise TrainingError(
            f"{where}: cannot write {what} ({reason}) at step {step}; the last good checkpoint is "
            f"{last_good_checkpoint(out)}"
        ) from e


def _replace_with_copy(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target`` so that ``target`` is always the old or the new version, never a
    half-written one: copy beside it, then rename."""
    staged = target.with_name(target.name + ".partial")
    if staged.is_dir():
        shutil.rmtree(staged)
    try:
        if source.is_dir():
            shutil.copytree(source, staged)
            replace_directory(staged, target)
        else:
            shutil.copy2(source, staged)
            os.replace(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True) if staged.is_dir() else staged.unlink(missing_ok=True)
        raise


def save_state(out, step, model, optimizer, scheduler, scaler, state, ctx, keep) -> None:
    trainer_state = {
        **{k: v for k, v in state.__dict__.items()},
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
    }
    save_checkpoint(out, step, model, optimizer, trainer_state, ctx.rank, ctx.barrier)
    if ctx.main:
        prune_checkpoints(out, keep, step)
    ctx.barrier()


def run_facts(
    config: TrainConfig, data: TrainingData, views: int, state: TrainerState, dev: dict | None
) -> dict:
    return {
        "objective": "unsup" if data.columns == 1 else "sup",
        "views": views,
        "temperature": config.temperature,
        "hard_negative_weight": config.hard_negative_weight,
        "step": state.global_step,
        "best_step": state.best_step,
        "dev": dev,
        "dev_before_training": state.dev_before,
        "train_file": data.path,
        "train_rows": len(data),
        "training_config": config.to_dict(),
    }


def format_scores(scores: dict[str, float] | None) -> str:
    if not scores:
        return "-"
    names = {"stsb_spearman": "STS-B", "sickr_spearman": "SICK-R", "avg_sts": "avg"}
    return ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in scores.items())


def describe_run(config, data, views, total_steps, device, precision, ctx, encoder) -> None:
    objective = "unsup" if data.columns == 1 else f"sup ({data.columns} columns)"
    blank = f", {data.skipped_blank} blank lines skipped" if data.skipped_blank else ""
    print(
        f"simcse: {objective} on {len(data):,} rows from {data.path}{blank}\n"
        f"simcse: model {encoder.source}, pooler {config.pooler}"
        f"{' (MLP in training only)' if config.mlp_only_train else ''}, packed={encoder.packed}\n"
        f"simcse: {total_steps} steps of {config.batch_size} rows x {views} views on {ctx.world_size} x {device} "
        f"in {precision}"
        + (f", GradCache chunks of {config.gradcache_chunk_size}" if config.gradcache_chunk_size else ""),
        file=sys.stderr,
    )


def finish(config, out, model, data, views, state, log) -> TrainResult:
    """Put the best (or, without dev evaluation, the last) model in the output directory and test it."""
    from simcse.model_card import model_card

    best = out / BEST_DIR
    if best.is_dir():
        dev_best = json.loads((best / "simcse.json").read_text(encoding="utf-8")).get("dev")
        for entry in best.iterdir():
            _replace_with_copy(entry, out / entry.name)
    else:
        dev_best = None
        model.encoder.save(out, extra=run_facts(config, data, views, state, None), merge=True)
    test = None
    if config.final_eval != "none":
        from simcse.evaluation.report import markdown_tables, write_json
        from simcse.evaluation.suite import evaluate

        baseline = None
        if config.final_eval_baseline:
            baseline_pooler = "cls_before_pooler" if config.pooler == "cls" else config.pooler
            baseline = evaluate(Encoder.load(config.model_name_or_path, baseline_pooler), config.final_eval,
                                mode="test", data_dir=config.data_dir, batch_size=config.eval_batch_size)  # fmt: skip
            baseline["name"] = f"before training ({baseline_pooler})"
        test = evaluate(str(out), config.final_eval, mode="test", data_dir=config.data_dir,
                        batch_size=config.eval_batch_size)  # fmt: skip
        test["name"] = out.name
        if baseline is not None:
            test["baseline"] = baseline
        write_json(test, out / "results.json")
        log.log(state.global_step, {"avg_sts": test["avg"].get("sts", float("nan"))}, "test")
        print(markdown_tables([baseline, test] if baseline is not None else [test]))
    meta_path = out / "simcse.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.update({"step": state.global_step, "best_step": state.best_step, "dev": dev_best, "test": _brief(test),
                 "simcse_version": __version__})  # fmt: skip
    meta_path.write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "README.md").write_text(model_card(meta, test), encoding="utf-8")
    print(
        f"simcse: model saved to {out} (best dev at step {state.best_step}: {format_scores(dev_best)}; "
        f"before training: {format_scores(state.dev_before)})",
        file=sys.stderr,
    )
    return TrainResult(
        out, state.global_step, state.best_metric, state.best_step, state.dev_before, dev_best, test
    )


def _brief(test: dict | None) -> dict | None:
    if not test:
        return None
    tasks = {
        k: {m: v[m] for m in ("spearman", "pearson", "acc", "f1") if m in v} for k, v in test["tasks"].items()
    }
    return {"mode": test["mode"], "aggregate": test["aggregate"], "tasks": tasks, "avg": test["avg"]}
