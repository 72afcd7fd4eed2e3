"""Small file-system helpers shared by the writers and readers: checksums, swapping a finished directory in,
reading JSON with a one-line error."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from simcse.errors import SimCSEError


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


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
