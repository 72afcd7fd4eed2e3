"""The training loop, readable top to bottom.

train(config):
  1. check everything that can fail on input before writing anything: the options, the environment, the
     training file, dev data, the output directory, and the model (encoder + MLP + what the family's
     methods add, :mod:`simcse.training.methods`);
  2. prepare the output directory (or find the checkpoint to resume);
  3. AdamW, linear schedule, loss scaler, the step function (plain or GradCache), and the resumed state;
  4. loop: batch -> step (forward: one pass, each sentence twice for unsup -> contrastive loss [+ the
     methods' auxiliary terms: MLM, DiffCSE's replaced-token detection] -> backward) -> clip -> finite
     check -> update; dev evaluation every ``eval_steps`` keeps the best model; a resumable checkpoint every
     ``save_steps``;
  5. write the best model to the output directory and evaluate it on the test sets.

Performance switches (all in TrainConfig): ``precision`` (bf16 / fp16 autocast, fp32), ``packed``
(unpadded BERT execution), ``attn_implementation`` (SDPA), ``compile``, ``num_threads``, ``fast_dropout``
(CPU dropout masks from cheaper random draws), ``tf32`` (TF32 matmuls on GPUs, on by default). Always on:
fused AdamW where the device has it; batches collated in a background thread into pinned memory and
copied with ``non_blocking``; the contrastive similarities and cross-entropy in fp32 under autocast.
Defaults per device (``precision auto``): bf16 on GPUs that have it, else fp16 with loss scaling; on CPUs
bf16 autocast with AMX or AVX512-BF16, else fp32. ``compile`` pads every batch to ``max_seq_len`` so one graph serves the whole run.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from simcse.core.errors import TrainingError
from simcse.core.runtime import seed_everything
from simcse.modeling.dropout import use_fast_dropout
from simcse.modeling.encoder import Encoder
from simcse.training import methods
from simcse.training.checkpoint import load_checkpoint, prune_checkpoints, save_checkpoint
from simcse.training.config import TrainConfig
from simcse.training.config.objective_options import POSITIVE_WINDOWS
from simcse.training.data import Collator, Prefetcher
from simcse.training.finish import finish, run_facts
from simcse.training.losses import ContrastiveLoss, SharedMaskViews
from simcse.training.methods.base import Context
from simcse.training.metrics import LogWindow, MetricsLog, describe_run, format_scores
from simcse.training.model import SimCSEModel
from simcse.training.run_dir import BEST_DIR, model_write_errors, prepare_output_dir
from simcse.training.setup import (
    Environment,
    Inputs,
    batch_inputs,
    build_model,
    build_optimizer,
    build_scheduler,
    read_inputs,
    resolve,
)
from simcse.training.steps import StepFn, check_finite, make_step

__all__ = ["TrainResult", "TrainerState", "TrainingError", "train"]


@dataclass
class TrainerState:
    """Where the run is; saved in every checkpoint."""

    global_step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    dev_before: dict[str, float] | None = None
    last_eval_step: int | None = None

    def advance(self, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> None:
        """Count one step (``step_in_epoch`` of ``epoch``), moving to the next epoch after its last."""
        self.global_step += 1
        self.epoch, self.step_in_epoch = epoch, step_in_epoch + 1
        if self.step_in_epoch >= steps_per_epoch:
            self.epoch, self.step_in_epoch = epoch + 1, 0


@dataclass
class TrainResult:
    """What :func:`train` returns: output directory, steps, best metric and step, dev scores, test results."""

    output_dir: Path
    global_step: int
    best_metric: float | None
    best_step: int | None
    dev_before: dict[str, float] | None
    dev_best: dict[str, float] | None
    test: dict | None


@dataclass
class Run:
    """Everything the loop and its helpers share."""

    config: TrainConfig
    env: Environment
    inputs: Inputs
    model: SimCSEModel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    step: StepFn
    state: TrainerState
    log: MetricsLog
    collate: Collator
    batch_inputs: list = field(default_factory=list)  # the methods' additions to each batch (MLM masking)
    hooks: list = field(default_factory=list)  # before_step(batch) / after_step() pieces of the loss
    progress: Any = None  # the progress bar, on the main process


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train SimCSE as configured (the module docstring lists the steps) and return a :class:`TrainResult`.

    Args:
        config: the run's options, validated first (every problem reported at once).
        resume: continue from the newest intact checkpoint in ``config.output_dir``."""
    config.validate()
    env = resolve(config)
    inputs = read_inputs(config, env.dist, resume)  # 1. everything that can fail on input, nothing written
    if env.precision == "bf16" and env.device.type == "cpu":  # dev evaluation with bf16 weights, as training
        for evaluator in (inputs.evaluator, inputs.geometry):
            if evaluator is not None:
                evaluator.dtype = torch.bfloat16
    seed_everything(config.seed)
    model, notes = build_model(config, inputs.views)
    additions = batch_inputs(config, model.encoder.tokenizer, env.device)
    if inputs.checkpoint is None:
        prepare_output_dir(config, inputs.out, resume, env.dist)  # 2.
    model.to(env.device)  # 3.
    if config.fast_dropout and env.device.type == "cpu":
        use_fast_dropout(model)  # every transformer the model trains (a second encoder, a discriminator)
    for note in notes if env.dist.main else ():
        print(f"simcse: {note}", file=sys.stderr)
    run = start(config, env, inputs, model, additions)
    try:
        if inputs.evaluator is not None and run.state.dev_before is None and config.eval_before_training:
            run.state.dev_before = evaluate_dev(run, 0)
            if env.dist.main:
                print(f"simcse: dev before training: {format_scores(run.state.dev_before)}", file=sys.stderr)
        loop(run)  # 4.
        result = finish_run(run)  # 5.
    finally:
        run.log.close(failed=sys.exc_info()[1] is not None)
    env.dist.close()
    return result


def start(
    config: TrainConfig, env: Environment, inputs: Inputs, model: SimCSEModel, additions: list | None = None
) -> Run:
    """The optimiser, schedule, scaler and step function, the collator, and the resumed state;
    ``additions``: the methods' additions to each batch (:func:`~simcse.training.setup.batch_inputs`)."""
    optimizer = build_optimizer(config, model, env.device)
    # the bf16 copies of the weights that bf16 dev evaluations encode with are stale after every step (a
    # fused AdamW updates in place without bumping the tensors' versions, so the copies cannot see it)
    encoders = [m for m in model.modules() if isinstance(m, Encoder)]

    def weights_changed(*_) -> None:
        for encoder in encoders:
            encoder.weights_changed()

    optimizer.register_step_post_hook(weights_changed)
    scheduler = build_scheduler(config, optimizer, inputs.total_steps)
    scaler = torch.amp.GradScaler(env.device.type, enabled=env.precision == "fp16")
    # sequences per row as the batches carry them: one with a shared dropout mask (both views are one pass)
    encoded_views = 1 if config.dropout_mask == "shared" else inputs.views
    loss_fn, hooks = build_loss(config, env, inputs, model, encoded_views)
    enabled = methods.enabled(config)
    pieces = [piece for m in enabled if (piece := m.collate_piece(config, inputs, model.encoder.tokenizer))]
    # the collator's own tokenizer copy: it runs in the prefetch thread while the dev evaluation may be
    # tokenising, and a fast tokenizer must not be used from two threads at once ("Already borrowed")
    collate = Collator(
        copy.deepcopy(model.encoder.tokenizer),
        config.max_seq_len,
        encoded_views,
        pad_to_length=config.max_seq_len if config.compile else None,
        augment=inputs.augment,
        seed=config.seed,
        next_window=POSITIVE_WINDOWS[config.positive],
        corpus=inputs.data.rows,
        prompt=model.encoder.prompt,
        pieces=pieces,
    )
    state = TrainerState()
    if inputs.checkpoint is not None:
        saved = load_checkpoint(inputs.checkpoint, model, optimizer, env.dist.rank)
        scheduler.load_state_dict(saved.pop("scheduler"))
        scaler.load_state_dict(saved.pop("scaler"))
        state = TrainerState(**saved)
        if env.dist.main:
            print(f"simcse: resuming from {inputs.checkpoint} (step {state.global_step})", file=sys.stderr)
    forward = model
    if env.dist.world_size > 1:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None
        )
    if config.compile:
        forward = torch.compile(forward, backend=config.compile_backend)
    step = make_step(config, forward, encoded_views, loss_fn, env.device, env.autocast, scaler)
    log = MetricsLog(inputs.out, env.dist.main, config, resumed=inputs.checkpoint is not None)
    if env.dist.main:
        describe_run(config, inputs.data, inputs.views, inputs.total_steps, env, model.encoder)
    return Run(
        config,
        env,
        inputs,
        model,
        optimizer,
        scheduler,
        scaler,
        step,
        state,
        log,
        collate,
        list(additions or []),
        hooks,
    )


def build_loss(
    config: TrainConfig, env: Environment, inputs: Inputs, model: SimCSEModel, views: int
) -> tuple[Any, list]:
    """The loss the step minimises, from the methods' pieces (extra negatives, dropped candidates and the
    step hooks they need: :meth:`~simcse.training.methods.base.Method.negatives`; a loss in place of
    InfoNCE; a term added to it), and those step hooks. ``views``: sequences per row as batches carry them."""
    scale = 1.0 / env.dist.world_size if config.ddp_gradient == "original" else 1.0
    context = Context(model, views, env.device, inputs.loaded)
    enabled = methods.enabled(config)
    sources, filters, hooks = [], [], []
    for method in enabled:
        pieces = method.negatives(config, context)
        if pieces is not None:
            sources += pieces.sources
            filters += pieces.filters
            hooks += pieces.hooks
    replaced = [loss for m in enabled if (loss := m.make_loss(config, scale, sources, filters)) is not None]
    loss_fn = (
        replaced[0]
        if replaced
        else ContrastiveLoss(
            config.temperature, config.hard_negative_weight, scale, config.similarity, sources, filters
        )
    )
    for method in enabled:
        loss_fn = method.wrap_loss(config, loss_fn)
    if config.dropout_mask == "shared":
        loss_fn = SharedMaskViews(loss_fn)
    return loss_fn, hooks


def loop(run: Run) -> None:
    """Step until ``total_steps``: each step updates the weights, then logs, evaluates and saves when due."""
    config, state, total, dist = run.config, run.state, run.inputs.total_steps, run.env.dist
    run.progress = progress_bar(run)
    batches = Prefetcher(
        run.inputs.plan.iterate(state.epoch, state.step_in_epoch, dist.rank, dist.world_size),
        run.inputs.data.rows,
        run.collate,
        pin_memory=run.env.device.type == "cuda",
    )
    window = LogWindow()
    run.model.train()
    if run.inputs.geometry is not None and state.global_step == 0:
        log_geometry(run, 0)
    try:
        while state.global_step < total:
            epoch, step_in_epoch, rows, batch = next(batches)
            loss, aux = train_step(run, batch)
            state.advance(epoch, step_in_epoch, run.inputs.plan.steps_per_epoch)
            window.add(len(rows) * dist.world_size, loss)
            step = state.global_step
            if run.progress is not None:
                run.progress.update(1)
            if step % max(config.logging_steps, 1) == 0 or step == total:
                log_window(run, window, aux)
            if run.inputs.geometry is not None and step % config.geometry_steps == 0:
                log_geometry(run, step)
            if run.inputs.evaluator is not None and config.eval_steps and step % config.eval_steps == 0:
                scores = evaluate_and_keep_best(run, step)
                if run.progress is not None:
                    run.progress.write(
                        f"step {step}: dev {format_scores(scores)} (best {state.best_metric:.2f})"
                    )
            if config.save_steps and step % config.save_steps == 0 and step < total:
                save_state(run, step)
    finally:
        batches.close()
        if run.progress is not None:
            run.progress.close()


def train_step(run: Run, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One update from a collated batch: to the device, the loss pieces' ``before_step`` hooks, the step
    (forward and backward), the weight update, the ``after_step`` hooks; returns (loss, auxiliary losses)."""
    batch = on_device(run, batch)
    for hook in run.hooks:
        hook.before_step(batch)
    loss, aux = run.step(batch)
    update_weights(run, loss)
    for hook in run.hooks:
        hook.after_step()
    return loss, aux


def on_device(run: Run, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch, with the methods' additions (MLM's masked copy, DiffCSE's edited copy), on the device.
    They are made here, not in the prefetch thread: they draw from the global generator, whose sequence
    makes a run reproducible."""
    for addition in run.batch_inputs:
        batch.update(addition(batch, run.env.autocast))
    return {k: v.to(run.env.device, non_blocking=True) for k, v in batch.items()}


def update_weights(run: Run, loss: torch.Tensor) -> None:
    """Clip, check that loss and gradients are finite (on every process), step, clear the gradients."""
    grad_norm = None
    if run.config.max_grad_norm:
        run.scaler.unscale_(run.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.max_grad_norm)
    check_finite(
        loss,
        grad_norm,
        run.model,
        run.scaler,
        run.env.dist,
        run.state.global_step + 1,
        run.inputs.out / "checkpoints",
    )
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)


def progress_bar(run: Run) -> Any:
    """The run's tqdm bar (from the resumed step) on the main process with ``progress_bar``, else None."""
    if not (run.env.dist.main and run.config.progress_bar):
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=run.inputs.total_steps,
        initial=run.state.global_step,
        desc="train",
        unit="step",
        dynamic_ncols=True,
    )


def log_window(run: Run, window: LogWindow, aux: dict[str, torch.Tensor]) -> None:
    """Log the window's mean loss, learning rate, throughput, epoch and auxiliary losses (file and bar)."""
    state, plan = run.state, run.inputs.plan
    record = window.averages()
    record = {
        "loss": record["loss"],
        "lr": run.scheduler.get_last_lr()[0],
        "sentences_per_s": record["sentences_per_s"],
        "epoch": state.epoch + state.step_in_epoch / plan.steps_per_epoch,
    }
    for name, value in aux.items():  # mlm_loss, rtd_loss: the last step's
        record[f"{name}_loss"] = value.item()
    run.log.log(state.global_step, record)
    if run.progress is not None:
        run.progress.set_postfix(
            loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", sent_s=f"{record['sentences_per_s']:.0f}"
        )


def log_geometry(run: Run, step: int) -> None:
    """Alignment and uniformity of STS-B dev now (main process), into metrics.jsonl as kind ``geometry``."""
    if run.env.dist.main:
        run.log.log(step, run.inputs.geometry(run.model.encoder), "geometry")
    run.env.dist.barrier()


def evaluate_dev(run: Run, step: int) -> dict[str, float] | None:
    """Dev scores of the encoder as it is now (main process; None elsewhere), logged."""
    scores = None
    if run.env.dist.main and run.inputs.evaluator is not None:
        scores = run.inputs.evaluator(run.model.encoder)
        run.log.log(step, scores, "eval")
    run.env.dist.barrier()
    return scores


def evaluate_and_keep_best(run: Run, step: int) -> dict[str, float] | None:
    """Evaluate on the dev sets; a new best model is saved to ``checkpoints/best``."""
    scores = evaluate_dev(run, step)
    run.state.last_eval_step = step
    shared = run.env.dist.broadcast(scores)
    metric, state = shared[run.config.best_metric], run.state
    if state.best_metric is None or metric > state.best_metric:
        state.best_metric, state.best_step = metric, step
        if run.env.dist.main:
            with model_write_errors(run.inputs.out, "the best model", step):
                facts = run_facts(run.config, run.inputs.data, run.inputs.views, state, shared)
                run.model.encoder.save(run.inputs.out / BEST_DIR, extra=facts)
    return scores


def save_state(run: Run, step: int) -> None:
    """A resumable checkpoint: weights, optimiser, schedule, scaler, trainer state, random states."""
    trainer_state = {
        **run.state.__dict__,
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
    }
    dist = run.env.dist
    save_checkpoint(run.inputs.out, step, run.model, run.optimizer, trainer_state, dist.rank, dist.barrier)
    if dist.main:
        prune_checkpoints(run.inputs.out, run.config.save_total_limit, step)
    dist.barrier()


def finish_run(run: Run) -> TrainResult:
    """A last dev evaluation when the last step had none and ``eval_at_end`` (or no evaluation ran: there
    would be no best model); then the final model (main process)."""
    state = run.state
    at_end = run.config.eval_at_end or not run.config.eval_steps or state.last_eval_step is None
    if run.inputs.evaluator is not None and at_end and state.last_eval_step != state.global_step:
        evaluate_and_keep_best(run, state.global_step)
    dev_best, test = None, None
    if run.env.dist.main:
        with model_write_errors(run.inputs.out, "the final model", state.global_step):
            dev_best, test = finish(
                run.config,
                run.inputs.out,
                run.model.encoder,
                run.inputs.data,
                run.inputs.views,
                state,
                run.log,
            )
    return TrainResult(
        run.inputs.out,
        state.global_step,
        state.best_metric,
        state.best_step,
        state.dev_before,
        dev_best,
        test,
    )
