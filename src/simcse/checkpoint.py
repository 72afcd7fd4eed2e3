"""Resumable training checkpoints: full state, written atomically, verified by checksum on load.

``OUTPUT/checkpoints/step-00000250/`` holds
- ``model.safetensors``: every trained weight (encoder, MLP, MLM head);
- ``optimizer.pt``: optimiser state (read back with ``torch.load(weights_only=True)``: no pickle code runs);
- ``rng-rank{r}.pt``: each process's random generator states (python, numpy, torch, CUDA);
- ``trainer_state.json``: step, data position, scheduler and loss-scaler state, best dev score;
- ``manifest.json``: sha256 and size of every file above, written last.

A checkpoint is written into ``step-N.tmp`` and renamed when complete; one without a valid manifest (a
killed or failed write, a truncated or corrupted file) is skipped on resume with a warning and the previous
good one is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from simcse.errors import SimCSEError

CHECKPOINTS = "checkpoints"
PREFIX = "step-"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Finished checkpoint directories, oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def verify(path: Path) -> str | None:
    """None when the checkpoint is complete and intact, else what is wrong."""
    manifest = path / "manifest.json"
    if not manifest.exists():
        return "no manifest (the write did not finish)"
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError) as e:
        return f"unreadable manifest ({e})"
    for name, meta in entries.items():
        file = path / name
        if not file.exists():
            return f"{name} is missing"
        if file.stat().st_size != meta["size"]:
            return f"{name} has {file.stat().st_size} bytes, expected {meta['size']}"
        if _sha256(file) != meta["sha256"]:
            return f"{name} fails its checksum"
    return None


def latest_checkpoint(output_dir: Path, world_size: int = 1) -> Path | None:
    """The newest intact checkpoint; newer broken ones are reported and skipped."""
    for path in reversed(checkpoint_dirs(output_dir)):
        problem = verify(path)
        if problem is None and not all((path / f"rng-rank{r}.pt").exists() for r in range(world_size)):
            problem = f"it was written by a different number of processes (expected {world_size})"
        if problem is None:
            return path
        warnings.warn(f"{path}: skipping a broken checkpoint: {problem}", stacklevel=2)
    return None


def save_checkpoint(
    output_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    rank: int = 0,
    barrier=lambda: None,
) -> Path:
    """Every process calls this; rank 0 writes the shared files, each rank its RNG state."""
    root = Path(output_dir) / CHECKPOINTS
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f"{PREFIX}{step:08d}.tmp"
    try:
        if rank == 0:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        barrier()
        torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
        if rank == 0:
            save_model(model, str(tmp / "model.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")
        barrier()
        if rank == 0:
            files = {}
            for file in sorted(tmp.iterdir()):
                with file.open("rb") as f:
                    os.fsync(f.fileno())
                files[file.name] = {"size": file.stat().st_size, "sha256": _sha256(file)}
            (tmp / "manifest.json").write_text(
                json.dumps({"step": step, "files": files}, indent=2), encoding="utf-8"
            )
            _fsync_dir(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(root)
    except OSError as e:
        if rank == 0 and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise SimCSEError(
            f"{tmp}: cannot write the checkpoint ({e.strerror or e}); the previous checkpoint is intact"
        ) from e
    return final


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    for path in checkpoint_dirs(output_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    root = Path(output_dir) / CHECKPOINTS
    if root.is_dir():
        for leftover in root.glob(f"{PREFIX}*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int = 0
) -> dict[str, Any]:
    """Restore weights, optimiser and this rank's RNG state; return the trainer state."""
    missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
    if unexpected or [k for k in missing if not _tied(model, k)]:
        raise SimCSEError(
            f"{path}: checkpoint does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
    set_rng_state(torch.load(path / f"rng-rank{rank}.pt", weights_only=True))
    return json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))


def _tied(model: torch.nn.Module, key: str) -> bool:
    """safetensors stores a tied weight once; the other name is restored through the tie."""
    params = dict(model.named_parameters(remove_duplicate=False))
    target = params.get(key)
    return target is not None and any(p is target for k, p in params.items() if k != key)
