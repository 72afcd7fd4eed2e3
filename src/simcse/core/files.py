"""Small file-system helpers shared by the writers and readers: checksums, writing a file or swapping a
finished directory in atomically, reading JSON with a one-line error."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simcse.core.errors import SimCSEError


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    """The SHA-256 hex digest of the file at ``path``, read in blocks of ``block`` bytes (1 MiB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write, renamed onto ``path`` when the block ends: readers see the
    old file or the whole new one, never part of it; after a failure nothing partial is left. The name ends
    in ``.tmp`` (a writer that picks the format by suffix must be told it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def replace_directory(staging: Path, target: Path) -> None:
    """Move a finished directory into place; the old one is removed only once the new one is there."""
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(staging, target)
    if old.exists():
        shutil.rmtree(old)


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Refuse, before any work, a result path that cannot be written: an existing directory, a parent that
    is a file, or a folder without write permission. ``option`` names the flag in the message."""
    path = Path(path)
    if path.is_dir():
        raise SimCSEError(f"{path}: {option} is a directory; give a file path")
    _check_writable_from(path, path.parent, option)
    return path


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """Refuse, before any work, a directory path that cannot be created or written: a file, or a parent
    that is a file or is read-only."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SimCSEError(f"{path}: {option} is a file; give a directory")
    _check_writable_from(path, path, option)
    return path


def _check_writable_from(path: Path, start: Path, option: str) -> None:
    """The nearest existing folder at or above ``start`` must be a writable directory."""
    existing = start
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SimCSEError(f"{path}: {option} cannot be written ({existing} is not a directory)")
    if not os.access(existing, os.W_OK):
        raise SimCSEError(f"{path}: {option} cannot be written (no write permission in {existing})")


def refuse_non_empty(directory: Path, overwrite: bool) -> None:
    """Refuse to replace a file, or a non-empty directory unless ``overwrite``."""
    if directory.exists() and not directory.is_dir():
        raise SimCSEError(f"{directory}: exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise SimCSEError(f"{directory}: exists and is not empty; pass --overwrite to replace it")


def read_json(path: Path) -> Any:
    """A JSON file's content; an unreadable or malformed file is a one-line SimCSEError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SimCSEError(f"{path}: cannot read JSON ({e})") from e
