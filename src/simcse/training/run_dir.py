"""The run directory: finding what to resume, refusing another run's directory, preparing a fresh one,
and writing models into it so that a failed write never leaves a half-written file behind.

Layout: ``OUTPUT/train_config.yaml``, ``OUTPUT/checkpoints/checkpoint-N`` (resumable state),
``OUTPUT/checkpoints/best`` (the best model so far), ``OUTPUT/metrics.jsonl``, and at the end the best model
itself at the top of ``OUTPUT``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError

from simcse.config import TrainConfig
from simcse.errors import ConfigError, TrainingError
from simcse.files import replace_directory
from simcse.runtime import Dist
from simcse.training.checkpoint import (
    checkpoint_dirs,
    last_good_checkpoint,
    latest_checkpoint,
    write_error_reason,
)

BEST_DIR = "checkpoints/best"
RUN_CONFIG = "train_config.yaml"  # written first by every run: what marks a directory as a run's
RESUME_KEYS = ("model_name_or_path", "train_file", "batch_size", "seed", "objective", "pooler", "max_seq_len",
               "shuffle", "max_train_samples", "do_mlm", "mlp_only_train")  # fmt: skip


def find_resume_point(config: TrainConfig, resume: bool, dist: Dist) -> tuple[Path, Path | None]:
    """The output directory and the checkpoint to resume, refusing to touch another run's directory.
    Writes nothing."""
    out = Path(config.output_dir).expanduser()
    checkpoint = latest_checkpoint(out, dist.world_size) if resume and out.exists() else None
    if checkpoint is not None:
        saved = out / RUN_CONFIG
        if saved.exists():
            check_resume_compatible(TrainConfig.from_yaml(saved), config, saved)
        return out, checkpoint
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: output_dir is a file")
    if not (out.exists() and any(out.iterdir())):
        return out, None
    is_run = (out / RUN_CONFIG).exists()
    if resume and is_run and (out / "simcse.json").is_file() and not checkpoint_dirs(out):
        raise ConfigError(
            f"{out}: this run has finished (its model is saved there) and kept no checkpoint; nothing to "
            "resume. Pass --overwrite_output_dir true to train it again, or choose another --output_dir"
        )
    if (resume or config.overwrite_output_dir) and not is_run:
        flag = "--resume" if resume else "--overwrite_output_dir"
        raise ConfigError(
            f"{out}: not a simcse training run (no {RUN_CONFIG}), so {flag} leaves it alone; "
            "choose another --output_dir"
        )
    if not resume and not config.overwrite_output_dir:
        raise ConfigError(
            f"{out}: output directory is not empty; pass --resume to continue that run, "
            "--overwrite_output_dir true to replace it, or choose another --output_dir"
        )
    return out, None


def check_resume_compatible(saved: TrainConfig, new: TrainConfig, path: Path) -> None:
    """A resumed run must read the same rows in the same order into the same model."""
    for key in RESUME_KEYS:
        if getattr(saved, key) != getattr(new, key):
            raise ConfigError(
                f"{path}: cannot resume with {key}={getattr(new, key)!r}, the run was started with "
                f"{getattr(saved, key)!r}"
            )


def prepare_output_dir(config: TrainConfig, out: Path, resume: bool, dist: Dist) -> None:
    """Create (or, with ``overwrite_output_dir``, replace) the directory and record the config in it."""
    if resume and dist.main:
        print(f"simcse: no checkpoint to resume in {out}; starting from scratch", file=sys.stderr)
    dist.barrier()
    if dist.main:
        if out.exists() and config.overwrite_output_dir and not resume:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_CONFIG).write_text(config.to_yaml(), encoding="utf-8")
    dist.barrier()


@contextlib.contextmanager
def model_write_errors(out: Path, what: str, step: int) -> Iterator[None]:
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


def replace_with_copy(source: Path, target: Path) -> None:
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
