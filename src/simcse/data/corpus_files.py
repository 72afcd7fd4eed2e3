"""The files of a corpus encoding (see :mod:`simcse.use.corpus`): the input scan (lines, UTF-8 check, shard
offsets), blocks of lines, the ``.npy`` format, the plan with its manifest and shard sidecars, and the
merge into one verified ``.npy``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simcse.core.errors import DataError, SimCSEError
from simcse.core.files import sha256_file, write_text_atomic

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_SHARD_SIZE = 100_000
DEFAULT_BLOCK_SIZE = 8192
HEAD_BYTES = 1 << 20
CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------- input scan
@dataclass
class InputScan:
    """What the scan learnt: line count, shard start offsets (bytes) and the input's identity."""

    lines: int
    offsets: list[int]
    identity: dict[str, Any]


def _input_identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    with path.open("rb") as f:
        head = hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_sha256": head}


def _check_text(path: Path, part: bytes, lines_before: int) -> None:
    """Raise a file:line error for invalid UTF-8 or a NUL byte in ``part`` (whole lines)."""
    try:
        part.decode("utf-8")
    except UnicodeDecodeError as e:
        line = lines_before + part[: e.start].count(b"\n") + 1
        message = f"not valid UTF-8 (byte {part[e.start]:#04x}); convert the file to UTF-8"
        raise DataError(path, message, line=line) from e
    nul = part.find(b"\x00")
    if nul >= 0:
        line = lines_before + part[:nul].count(b"\n") + 1
        raise DataError(path, "contains a NUL byte; not a text file", line=line)


def scan_input(path: str | os.PathLike, shard_size: int) -> InputScan:
    """One pass over the file: count lines, validate the text, find each shard's first byte."""
    path = Path(path)
    if shard_size < 1:
        raise SimCSEError(f"shard size must be at least 1, got {shard_size}")
    if not path.exists():
        raise DataError(path, "input file not found")
    if path.is_dir():
        raise DataError(path, "is a directory, not a text file")
    offsets = [0]
    newlines = 0
    pos = 0  # bytes consumed before ``pending``
    pending = b""  # bytes after the last newline seen (part of a line)
    try:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                buf = pending + chunk
                cut = buf.rfind(b"\n") + 1
                part, pending = buf[:cut], buf[cut:]
                _check_text(path, part, newlines)
                count = part.count(b"\n")
                # shard starts: the byte after newline number k*shard_size (1-based ``first`` in this part)
                first = len(offsets) * shard_size - newlines
                if first <= count:
                    ends = np.flatnonzero(np.frombuffer(part, dtype=np.uint8) == ord("\n"))
                    offsets.extend((pos + ends[first - 1 :: shard_size] + 1).tolist())
                newlines += count
                pos += len(part)
            _check_text(path, pending, newlines)
    except OSError as e:
        raise DataError(path, f"cannot read ({e.strerror})") from e
    lines = newlines + (1 if pending else 0)
    if lines == 0:
        raise DataError(path, "input file is empty; nothing to encode")
    shards = -(-lines // shard_size)
    return InputScan(lines, offsets[:shards], _input_identity(path))


def iter_line_blocks(
    path: Path, offset: int, first_line: int, count: int, block_size: int
) -> Iterator[list[str]]:
    """``count`` lines from byte ``offset`` (line number ``first_line``, 0-based) in lists of ``block_size``.
    Line endings (``\\n``, ``\\r\\n``) and a UTF-8 BOM on the first line are dropped; other text is kept."""
    block: list[str] = []
    with path.open("rb") as f:
        f.seek(offset)
        for i in range(count):
            raw = f.readline()
            if not raw:
                raise DataError(
                    path, "shorter than when it was scanned; was it changed?", line=first_line + i + 1
                )
            text = raw.decode("utf-8")
            if first_line + i == 0:
                text = text.removeprefix("\ufeff")
            block.append(text.rstrip("\n").removesuffix("\r"))
            if len(block) == block_size:
                yield block
                block = []
    if block:
        yield block


# ---------------------------------------------------------------------------------------------- npy files
def npy_header(rows: int, dim: int) -> bytes:
    """The ``.npy`` 1.0 header of a C-order float32 matrix of ``rows`` x ``dim``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
    return buf.getvalue()


def _npy_shape_and_offset(path: Path) -> tuple[tuple[int, ...], int]:
    with path.open("rb") as f:
        version = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read(f)
        if fortran or dtype != np.dtype("<f4"):
            raise SimCSEError(f"{path}: not a float32 C-order array")
        return shape, f.tell()


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON into ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------- plan
@dataclass
class Plan:
    """The shard layout and identity of a run (the content of manifest.json)."""

    key: dict[str, Any]  # input, model and settings: must match to resume
    shard_size: int
    lines: int
    dim: int
    offsets: list[int]

    def shard_lines(self, k: int) -> int:
        """How many lines shard ``k`` holds (the last one may be shorter)."""
        return min(self.shard_size, self.lines - k * self.shard_size)

    def to_json(self) -> dict[str, Any]:
        """The manifest: version, key, sizes, and each shard's first line, byte offset and line count."""
        shards = [
            {"first_line": k * self.shard_size, "offset": off, "lines": self.shard_lines(k)}
            for k, off in enumerate(self.offsets)
        ]
        return {
            "version": MANIFEST_VERSION,
            **self.key,
            "shard_size": self.shard_size,
            "lines": self.lines,
            "dim": self.dim,
            "shards": shards,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """The plan of a manifest read back (:meth:`to_json`'s inverse)."""
        key = {k: data[k] for k in ("input", "model", "settings")}
        offsets = [int(s["offset"]) for s in data["shards"]]
        return cls(key, int(data["shard_size"]), int(data["lines"]), int(data["dim"]), offsets)


def shard_dir_for(output_path: Path) -> Path:
    """The shards' directory of an output file: ``OUTPUT.npy.shards`` beside it."""
    return output_path.with_name(output_path.name + ".shards")


def shard_path(shard_dir: Path, k: int) -> Path:
    """Shard ``k``'s matrix in ``shard_dir`` (``shard-00000.npy``)."""
    return shard_dir / f"shard-{k:05d}.npy"


def sidecar_path(shard_dir: Path, k: int) -> Path:
    """Shard ``k``'s sidecar (``shard-00000.json``), written once the shard is complete."""
    return shard_dir / f"shard-{k:05d}.json"


def _mismatch(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _mismatch(a, b, f"{prefix}{name}.")
        elif a != b:
            diffs.append(f"{prefix}{name}")
    return diffs


def prepare_plan(
    input_path: Path,
    shard_dir: Path,
    key_without_input: dict[str, Any],
    dim: int,
    shard_size: int | None,
    overwrite: bool,
) -> Plan:
    """Scan the input and create or check ``OUTPUT.shards/manifest.json`` (rank 0 only)."""
    manifest_path = shard_dir / MANIFEST
    old: dict[str, Any] | None = None
    if manifest_path.exists() and not overwrite:
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
            Plan.from_json(old)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SimCSEError(
                f"{manifest_path}: unreadable manifest of an earlier run ({e}); pass --overwrite to start over"
            ) from e
    size = shard_size or (int(old["shard_size"]) if old else DEFAULT_SHARD_SIZE)
    scan = scan_input(input_path, size)
    key = {"input": scan.identity, **key_without_input}
    plan = Plan(key, size, scan.lines, dim, scan.offsets)
    if old is not None:
        fields = ("input", "model", "settings", "shard_size")
        new_json = plan.to_json()
        diffs = _mismatch({k: old.get(k) for k in fields}, {k: new_json[k] for k in fields})
        if diffs:
            raise SimCSEError(
                f"{manifest_path}: left by a run with a different {', '.join(diffs)}; "
                "pass --overwrite to discard its shards and start over"
            )
        return plan
    if shard_dir.exists():
        shutil.rmtree(shard_dir)
    shard_dir.mkdir(parents=True)
    write_json(manifest_path, plan.to_json())
    return plan


def shard_is_complete(shard_dir: Path, k: int, plan: Plan) -> bool:
    """The shard, its sidecar and its sha256 agree with the plan (anything else is encoded again)."""
    path, side = shard_path(shard_dir, k), sidecar_path(shard_dir, k)
    if not (path.is_file() and side.is_file()):
        return False
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        shape, _ = _npy_shape_and_offset(path)
        ok = meta.get("lines") == plan.shard_lines(k) and shape == (plan.shard_lines(k), plan.dim)
        return ok and meta.get("sha256") == sha256_file(path)
    except (OSError, ValueError, SimCSEError):
        return False


def merge_shards(shard_dir: Path, plan: Plan, output_path: Path) -> Path:
    """Concatenate the shards into ``output_path`` (temp file, then rename), checking each sha256."""
    tmp = output_path.with_name(output_path.name + ".tmp")
    try:
        with tmp.open("wb") as out:
            out.write(npy_header(plan.lines, plan.dim))
            for k in range(len(plan.offsets)):
                path = shard_path(shard_dir, k)
                expected = json.loads(sidecar_path(shard_dir, k).read_text(encoding="utf-8"))["sha256"]
                shape, data_start = _npy_shape_and_offset(path)
                if shape != (plan.shard_lines(k), plan.dim):
                    raise SimCSEError(f"{path}: shape {shape}, expected {(plan.shard_lines(k), plan.dim)}")
                h = hashlib.sha256()
                with path.open("rb") as f:
                    header = f.read(data_start)
                    h.update(header)
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                if h.hexdigest() != expected:
                    path.unlink()  # the rerun encodes it again
                    raise SimCSEError(
                        f"{path}: changed after it was written (sha256 mismatch); rerun to re-encode it"
                    )
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, output_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    shutil.rmtree(shard_dir)
    return output_path
