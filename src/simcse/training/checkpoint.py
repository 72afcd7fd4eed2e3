"""Resumable training checkpoints: full state, written atomically, verified by checksum on load.

``OUTPUT/checkpoints/step-00000250/`` holds
- ``model.safetensors``: every trained weight (encoder, MLP, MLM head, DiffCSE's discriminator);
- ``optimizer.pt``: optimiser state (read back with ``torch.load(weights_only=True)``: no pickle code runs);
- ``rng-rank{r}.pt``: each process's random generator states (python, numpy, torch, CUDA);
- ``trainer_state.json``: step, data position, scheduler and loss-scaler state, best dev score;
- ``manifest.json``: sha256 and size of every file above, written last.

A checkpoint is written into ``step-N.tmp`` and renamed when complete; one without a valid manifest (a
killed or failed write, a truncated or corrupted file) is skipped on resume with a warning and the previous
good one is used.

Every file is serialised in memory and written by Python (``_write_bytes``): ``torch.save`` and safetensors'
``save_file`` report a full disk as a bare RuntimeError / SafetensorError without the errno (torch even
swallows the OSError of a Python file object), so a failed write would otherwise escape as a traceback
and leave a half-written directory. Here it is an ``OSError`` with its errno, the temporary directory is
removed, and the caller gets a one-line ``CheckpointError``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pickle
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model

from simcse.core.errors import SimCSEError
from simcse.core.files import sha256_file

CHECKPOINTS = "checkpoints"
PREFIX = "step-"
REQUIRED = ("model.safetensors", "optimizer.pt", "trainer_state.json")


class CheckpointError(SimCSEError):
    """A checkpoint could not be written, or refused to load (e.g. it holds pickled code)."""


def write_error_reason(error: BaseException) -> str | None:
    """'no space left on device' and the like for a failed write; None when ``error`` is no I/O failure.

    safetensors reports I/O errors as ``SafetensorError('... I/O error: No space left on device (os error
    28)')``; the errno is recovered from that text.
    """
    if isinstance(error, OSError):
        reason = error.strerror or str(error) or errno.errorcode.get(error.errno or 0, "I/O error")
    elif isinstance(error, SafetensorError) and (m := re.search(r"os error (\d+)", str(error))):
        reason = os.strerror(int(m.group(1)))
    elif isinstance(error, SafetensorError) and "I/O error" in str(error):
        return " ".join(str(error).split())
    else:
        return None
    return reason[:1].lower() + reason[1:]


def _write_bytes(path: Path, data: bytes) -> None:
    """Write and fsync one file; a full disk raises OSError(ENOSPC) here, not somewhere inside a library."""
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _remove(path: Path, ignore_errors: bool = False) -> None:
    """Delete a directory of ours; a symlink in its place is unlinked, never followed."""
    try:
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        elif path.exists():
            shutil.rmtree(path, ignore_errors=ignore_errors)
    except OSError:
        if not ignore_errors:
            raise


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _model_bytes(model: torch.nn.Module) -> bytes:
    """safetensors bytes of the state dict, tied weights stored once (as ``safetensors.torch.save_model``)."""
    state = model.state_dict()
    removed = safetensors.torch._remove_duplicate_names(state)
    metadata = {}
    for kept, names in removed.items():
        for name in names:
            metadata[name] = kept
            del state[name]
    state = {k: v.contiguous() for k, v in state.items()}
    return safetensors.torch.save(state, metadata=metadata or None)


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
    """The state of Python's, NumPy's and torch's global generators (and CUDA's, once CUDA is initialised), as
    tensors and lists a checkpoint can hold."""
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
    """Restore the generators from :func:`rng_state`'s dict (CUDA's when saved and available; the cached
    Gaussian values of Python and NumPy are not kept)."""
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
        entries = {str(name): (int(meta["size"]), str(meta["sha256"])) for name, meta in entries.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"unreadable manifest ({type(e).__name__}: {e})"
    for name in REQUIRED:
        if name not in entries:
            return f"the manifest does not list {name}"
    for name, (size, sha256) in entries.items():
        file = path / name
        if "/" in name or "\\" in name or name in ("", ".", "..") or not file.is_file():
            return f"{name!r} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, expected {size}"
        if sha256_file(file) != sha256:
            return f"{name} fails its checksum"
    return None


def last_good_checkpoint(output_dir: Path) -> str:
    """The newest intact checkpoint directory, for error messages."""
    for path in reversed(checkpoint_dirs(output_dir)):
        if verify(path) is None:
            return str(path)
    return "none (no checkpoint was written yet)"


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
    written: dict[str, dict[str, Any]] = {}  # this process's files, hashed from memory, not read back

    def write(name: str, data: bytes) -> None:
        _write_bytes(tmp / name, data)
        written[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    try:
        if rank == 0:
            _remove(tmp)
            tmp.mkdir(parents=True)
        barrier()
        write(f"rng-rank{rank}.pt", _torch_bytes(rng_state()))
        if rank == 0:
            write("model.safetensors", _model_bytes(model))
            write("optimizer.pt", _torch_bytes(optimizer.state_dict()))
            write("trainer_state.json", json.dumps(trainer_state, indent=2).encode("utf-8"))
        barrier()
        if rank == 0:
            files = {  # the other processes' RNG files are read from disk
                f.name: written.get(f.name) or {"size": f.stat().st_size, "sha256": sha256_file(f)}
                for f in sorted(tmp.iterdir())
            }
            manifest = {"step": step, "files": files}
            _write_bytes(tmp / "manifest.json", json.dumps(manifest, indent=2).encode("utf-8"))
            _fsync_dir(tmp)
            _remove(final)
            os.replace(tmp, final)
            _fsync_dir(root)
    except OSError as e:
        if rank == 0:
            _remove(tmp, ignore_errors=True)
        raise CheckpointError(
            f"{tmp}: cannot write the checkpoint ({write_error_reason(e)}) at step {step}; "
            f"the last good checkpoint is {last_good_checkpoint(Path(output_dir))}"
        ) from e
    return final


def prune_checkpoints(output_dir: Path, keep: int, current_step: int | None = None) -> None:
    """Keep the ``keep`` newest checkpoints up to ``current_step``. Newer ones are stale: left by the run
    this one resumed, which skipped them as broken; kept, they would outrank (and prune) the good ones.
    A symlink is unlinked, never followed: nothing outside the output directory is deleted."""
    dirs = checkpoint_dirs(output_dir)
    stale = [p for p in dirs if current_step is not None and int(p.name[len(PREFIX) :]) > current_step]
    live = [p for p in dirs if p not in stale]
    root = Path(output_dir) / CHECKPOINTS
    leftovers = list(root.glob(f"{PREFIX}*.tmp")) if root.is_dir() else []
    for path in [*stale, *live[:-keep], *leftovers]:
        _remove(path, ignore_errors=True)


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int = 0
) -> dict[str, Any]:
    """Restore weights, optimiser and this rank's RNG state; return the trainer state."""
    missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
    if unexpected or [k for k in missing if not _tied(model, k)]:
        raise SimCSEError(
            f"{path}: checkpoint does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    optimizer.load_state_dict(_load_tensors(path / "optimizer.pt", map_location="cpu"))
    set_rng_state(_load_tensors(path / f"rng-rank{rank}.pt"))
    return json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))


def _load_tensors(file: Path, **kwargs: Any) -> Any:
    """``torch.load`` with ``weights_only=True``: a pickle that asks to run code is refused, not run."""
    try:
        return torch.load(file, weights_only=True, **kwargs)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{file}: refused to load: it is not plain tensor data (it asks to run code or build objects "
            "that a checkpoint never holds); delete this checkpoint directory"
        ) from e


def _tied(model: torch.nn.Module, key: str) -> bool:
    """safetensors stores a tied weight once; the other name is restored through the tie."""
    params = dict(model.named_parameters(remove_duplicate=False))
    target = params.get(key)
    return target is not None and any(p is target for k, p in params.items() if k != key)
