"""The run directory: finding what to resume, refusing another run's directory, preparing a fresh one,
and writing models into it so that a failed write never leaves a half-written file behind.

Layout: ``OUTPUT/train_config.yaml``, ``OUTPUT/checkpoints/checkpoint-N`` (resumable state),
``OUTPUT/checkpoints/best`` (the best model so far), ``OUTPUT/metrics.jsonl``, and at the end the best model
itself at the top of ``OUTPUT``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from safetensors import SafetensorError

from simcse.core.errors import ConfigError, TrainingError
from simcse.core.files import replace_directory, write_text_atomic
from simcse.core.runtime import Dist
from simcse.training.checkpoint import (
    checkpoint_dirs,
    last_good_checkpoint,
    latest_checkpoint,
    write_error_reason,
)
from simcse.training.config import TrainConfig

BEST_DIR = "checkpoints/best"
FINAL_DIR = "checkpoints/final"  # the last model, staged there when no dev evaluation picks a best one
RUN_CONFIG = "train_config.yaml"  # written first by every run: what marks a directory as a run's
MANIFEST = ".simcse-files"  # the top-level names this toolkit wrote: all that --overwrite_output_dir removes
RUN_NAMES = (RUN_CONFIG, MANIFEST, "checkpoints", "metrics.jsonl", "tensorboard", "results.json")
RESUME_KEYS = (
    "model_name_or_path",
    "train_file",
    "batch_size",
    "seed",
    "objective",
    "pooler",
    "max_seq_len",
    "shuffle",
    "max_train_samples",
    "do_mlm",
    "mlp_only_train",
)


def find_resume_point(config: TrainConfig, resume: bool, dist: Dist) -> tuple[Path, Path | None]:
    """The output directory and the checkpoint to resume, refusing to touch another run's directory.
    Writes nothing."""
    out = Path(config.output_dir).expanduser()
    step = finished_step(out, config) if resume else None
    if step is not None:
        raise ConfigError(
            f"{out}: this run finished at step {step} (its model is saved there); nothing to resume. Raise "
            "--max_steps to train it further, pass --overwrite_output_dir true to train it again, or choose "
            "another --output_dir"
        )
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


def finished_step(out: Path, config: TrainConfig) -> int | None:
    """The last step of a run in ``out`` that finished with the same length as ``config`` asks for, else
    None (not finished, or ``config`` trains it further)."""
    try:
        meta = json.loads((out / "simcse.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("finished") is not True:
        return None
    saved = meta.get("training_config") or {}
    if any(saved.get(key) != getattr(config, key) for key in ("max_steps", "num_epochs")):
        return None
    return meta.get("step")


def check_resume_compatible(saved: TrainConfig, new: TrainConfig, path: Path) -> None:
    """A resumed run must read the same rows in the same order into the same model."""
    for key in RESUME_KEYS:
        if getattr(saved, key) != getattr(new, key):
            raise ConfigError(
                f"{path}: cannot resume with {key}={getattr(new, key)!r}, the run was started with "
                f"{getattr(saved, key)!r}"
            )


def prepare_output_dir(config: TrainConfig, out: Path, resume: bool, dist: Dist) -> None:
    """Create the directory (with ``overwrite_output_dir``, first remove what an earlier run wrote there)
    and record the config in it."""
    if resume and dist.main:
        print(f"simcse: no checkpoint to resume in {out}; starting from scratch", file=sys.stderr)
    dist.barrier()
    if dist.main:
        if out.exists() and config.overwrite_output_dir and not resume:
            kept = remove_written(out)
            if kept:
                what = "entry" if len(kept) == 1 else "entries"
                print(
                    f"simcse: {out}: kept {len(kept)} {what} simcse did not write: {', '.join(kept)}",
                    file=sys.stderr,
                )
        out.mkdir(parents=True, exist_ok=True)
        record_written(out, RUN_NAMES)
        (out / RUN_CONFIG).write_text(config.to_yaml(), encoding="utf-8")
    dist.barrier()


def written_names(out: Path) -> set[str]:
    """The top-level names of ``out`` that a run wrote (its manifest; the fixed run names for a run
    directory from before the manifest existed)."""
    try:
        return set(json.loads((out / MANIFEST).read_text(encoding="utf-8"))) | set(RUN_NAMES)
    except FileNotFoundError:
        return set(RUN_NAMES)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"{out / MANIFEST}: unreadable ({e}); remove the directory yourself") from e


def record_written(out: Path, names: Iterable[str]) -> None:
    """Add ``names`` to the manifest before writing them, so that an interrupted write is still listed."""
    path = out / MANIFEST
    known = set(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else set()
    if not known.issuperset(names):
        write_text_atomic(path, json.dumps(sorted(known | set(names))) + "\n")


def remove_written(out: Path) -> list[str]:
    """Remove what earlier runs wrote in ``out``; return the names left because simcse did not write them."""
    ours = written_names(out)
    for entry in sorted(out.iterdir()):
        if entry.name in ours and entry.name != MANIFEST:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    (out / MANIFEST).unlink(missing_ok=True)
    return sorted(e.name for e in out.iterdir())


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
