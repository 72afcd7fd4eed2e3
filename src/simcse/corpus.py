"""Encode a text file of any size into one ``.npy`` matrix: streamed, sharded, resumable, multi-process.

``encode_corpus(model, "corpus.txt", "corpus.npy")`` writes a float32 array (n_lines, dim) whose row i is
the embedding of line i. Line i and row i always match: **blank lines are encoded too** (as the empty
string: the model's embedding of ``[CLS] [SEP]``), never skipped. A trailing newline does not start a line.

How it stays bounded and restartable:

1. A scan reads the input once in 1 MiB chunks: it counts lines, checks UTF-8 and NUL bytes (an error
   names ``file:line`` before anything is encoded) and notes the byte offset where each shard starts.
2. Shard k (lines ``k*shard_size ...``) is read ``block_size`` lines at a time, each block encoded with
   :meth:`Encoder.encode` (length-sorted batches inside) and appended to ``OUTPUT.shards/shard-0000k.npy``;
   only then is the shard renamed into place and its sidecar ``shard-0000k.json`` (lines, sha256) written.
   ``OUTPUT.shards/manifest.json`` records the input (size, mtime, sha256 of its first MiB), the model
   fingerprint and the settings that change the numbers (pooler, max length, normalisation, dtype).
3. The shards are concatenated into ``OUTPUT.tmp`` (the header states the final shape, each shard's sha256
   is checked while copying), which is renamed to ``OUTPUT``; then the shards are removed.

A rerun after an interruption (even SIGKILL) reuses every shard whose sidecar and sha256 check out and
encodes the rest; a manifest left by another model, input or settings is refused unless ``overwrite``.
Peak memory is one block of lines and embeddings, whatever the file size.

Under ``torchrun`` (``WORLD_SIZE`` > 1) rank r encodes shards r, r+W, r+2W, ... on ``cuda:LOCAL_RANK`` (or
the CPU, gloo); rank 0 scans, waits for all ranks and merges, so the output equals a single-process run.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simcse.errors import DataError, SimCSEError
from simcse.files import sha256_file
from simcse.modeling.encoder import Encoder
from simcse.runtime import Dist

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_SHARD_SIZE = 100_000
DEFAULT_BLOCK_SIZE = 8192
HEAD_BYTES = 1 << 20
CHUNK = 1 << 20
DIST_TIMEOUT = datetime.timedelta(hours=24)


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


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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
        return min(self.shard_size, self.lines - k * self.shard_size)

    def to_json(self) -> dict[str, Any]:
        shards = [{"first_line": k * self.shard_size, "offset": off, "lines": self.shard_lines(k)}
                  for k, off in enumerate(self.offsets)]  # fmt: skip
        return {"version": MANIFEST_VERSION, **self.key, "shard_size": self.shard_size, "lines": self.lines,
                "dim": self.dim, "shards": shards}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        key = {k: data[k] for k in ("input", "model", "settings")}
        offsets = [int(s["offset"]) for s in data["shards"]]
        return cls(key, int(data["shard_size"]), int(data["lines"]), int(data["dim"]), offsets)


def shard_dir_for(output_path: Path) -> Path:
    return output_path.with_name(output_path.name + ".shards")


def shard_path(shard_dir: Path, k: int) -> Path:
    return shard_dir / f"shard-{k:05d}.npy"


def _sidecar(shard_dir: Path, k: int) -> Path:
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
    _write_json(manifest_path, plan.to_json())
    return plan


def shard_is_complete(shard_dir: Path, k: int, plan: Plan) -> bool:
    """The shard, its sidecar and its sha256 agree with the plan (anything else is encoded again)."""
    path, side = shard_path(shard_dir, k), _sidecar(shard_dir, k)
    if not (path.is_file() and side.is_file()):
        return False
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        shape, _ = _npy_shape_and_offset(path)
        ok = meta.get("lines") == plan.shard_lines(k) and shape == (plan.shard_lines(k), plan.dim)
        return ok and meta.get("sha256") == sha256_file(path)
    except (OSError, ValueError, SimCSEError):
        return False


# ---------------------------------------------------------------------------------------------- encoding
@dataclass
class EncodeSettings:
    batch_size: int
    block_size: int
    normalize: bool
    max_length: int | None
    dtype: torch.dtype | None


def encode_shard(
    encoder: Encoder,
    input_path: Path,
    shard_dir: Path,
    plan: Plan,
    k: int,
    settings: EncodeSettings,
    on_block: Callable[[int], None] = lambda n: None,
) -> None:
    """Encode shard k into ``shard-k.npy`` (written to a temp name, then renamed) and its sidecar."""
    rows = plan.shard_lines(k)
    final = shard_path(shard_dir, k)
    tmp = final.with_name(final.name + ".tmp")
    h = hashlib.sha256()
    with tmp.open("wb") as out:
        header = npy_header(rows, plan.dim)
        out.write(header)
        h.update(header)
        for block in iter_line_blocks(
            input_path, plan.offsets[k], k * plan.shard_size, rows, settings.block_size
        ):
            emb = encoder.encode(
                block, settings.batch_size, settings.normalize, settings.max_length, settings.dtype
            )
            data = np.ascontiguousarray(emb, dtype="<f4")
            if data.shape != (len(block), plan.dim):
                raise SimCSEError(f"the encoder returned shape {data.shape} for {len(block)} lines")
            out.write(data.data)
            h.update(data.data)
            on_block(len(block))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, final)
    _write_json(_sidecar(shard_dir, k), {"lines": rows, "dim": plan.dim, "sha256": h.hexdigest()})


def merge_shards(shard_dir: Path, plan: Plan, output_path: Path) -> Path:
    """Concatenate the shards into ``output_path`` (temp file, then rename), checking each sha256."""
    tmp = output_path.with_name(output_path.name + ".tmp")
    try:
        with tmp.open("wb") as out:
            out.write(npy_header(plan.lines, plan.dim))
            for k in range(len(plan.offsets)):
                path = shard_path(shard_dir, k)
                expected = json.loads(_sidecar(shard_dir, k).read_text(encoding="utf-8"))["sha256"]
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


# ---------------------------------------------------------------------------------------------- distributed
def _raise_first(errors: list[str | None]) -> None:
    for e in errors:
        if e:
            raise SimCSEError(e)


# ---------------------------------------------------------------------------------------------- entry point
def encode_corpus(
    model: Encoder | str | os.PathLike | None,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    batch_size: int = 128,
    max_length: int | None = None,
    pooler: str | None = None,
    dtype: torch.dtype | None = None,
    normalize: bool = True,
    shard_size: int | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Encode every line of ``input_path`` into ``output_path`` (.npy, float32, (n_lines, dim)); see the
    module docstring. ``model`` is an :class:`Encoder`, a model path / hub id, or None for the embedded
    model. ``shard_size`` defaults to the interrupted run's (when resuming) or 100,000 lines.
    ``overwrite`` replaces an existing output and discards the shards of any earlier run.
    Returns the output path (on every rank under torchrun)."""
    input_path, output_path = Path(input_path), Path(output_path)
    if block_size < 1 or batch_size < 1:
        raise SimCSEError("batch size and block size must be at least 1")
    if output_path.is_dir():
        raise SimCSEError(f"{output_path}: is a directory; give the .npy file to write")
    if output_path.exists() and not overwrite:
        raise SimCSEError(f"{output_path}: already exists; pass --overwrite to replace it")
    if not input_path.is_file():
        raise DataError(
            input_path, "is a directory, not a text file" if input_path.is_dir() else "input file not found"
        )
    # Ranks wait for each other between phases (a resumed run can leave one rank most of the work), so the
    # collectives' timeout is long rather than the 10-30 minute default.
    dist = Dist.from_env(torch.cuda.is_available(), timeout=DIST_TIMEOUT)
    try:
        result = _encode_corpus(
            dist, model, input_path, output_path, batch_size, max_length, pooler, dtype, normalize,
            shard_size, block_size, overwrite, device, show_progress, log,
        )  # fmt: skip
    except BaseException:
        dist.close(wait=False)
        raise
    dist.close()
    return result


def _encode_corpus(
    dist: Dist,
    model: Encoder | str | os.PathLike | None,
    input_path: Path,
    output_path: Path,
    batch_size: int,
    max_length: int | None,
    pooler: str | None,
    dtype: torch.dtype | None,
    normalize: bool,
    shard_size: int | None,
    block_size: int,
    overwrite: bool,
    device: str | torch.device | None,
    show_progress: bool,
    log: Callable[[str], None] | None,
) -> Path:
    say = log if (log is not None and dist.rank == 0) else (lambda message: None)
    if device is None:
        device = f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu"
    if model is None or isinstance(model, (str, os.PathLike)):
        encoder = Encoder.load(model, pooler, max_length=max_length)  # "" or None: the embedded model
        encoder.to(device)
    else:  # an Encoder (or an object with its encode / fingerprint / dim interface)
        encoder = model
        if pooler is not None and pooler != encoder.pooler:
            raise SimCSEError("pooler can only be chosen when the model is given by name or path")
    encoder.eval()
    key = {
        "model": {"fingerprint": encoder.fingerprint(), "source": str(encoder.source)},
        "settings": {
            "pooler": encoder.inference_pooler,
            "max_length": int(max_length or encoder.max_length),
            "normalize": bool(normalize),
            "dtype": str(dtype or torch.float32).removeprefix("torch."),
        },
    }
    shard_dir = shard_dir_for(output_path)
    plan_json: dict | str
    if dist.rank == 0:
        try:
            output_path.parent.mkdir(parents=True, exist_ok=True)
            plan_json = prepare_plan(input_path, shard_dir, key, encoder.dim, shard_size, overwrite).to_json()
        except SimCSEError as e:
            plan_json = str(e)
            dist.broadcast(plan_json)
            raise
        except Exception as e:
            dist.broadcast(f"rank 0 failed: {type(e).__name__}: {e}")
            raise
    plan_json = dist.broadcast(plan_json if dist.rank == 0 else None)
    if isinstance(plan_json, str):
        raise SimCSEError(plan_json)
    plan = Plan.from_json(plan_json)
    mine = list(range(dist.rank, len(plan.offsets), dist.world_size))

    error: str | None = None
    todo: list[int] = []
    reused_lines = 0
    try:
        for k in mine:
            if shard_is_complete(shard_dir, k, plan):
                reused_lines += plan.shard_lines(k)
            else:
                _sidecar(shard_dir, k).unlink(missing_ok=True)
                todo.append(k)
    except OSError as e:
        error = f"{shard_dir}: cannot check the shards of an earlier run ({e})"
    status = dist.gather((error, len(mine) - len(todo), reused_lines))
    _raise_first([s[0] for s in status])
    if sum(s[1] for s in status):
        say(f"resuming: {sum(s[1] for s in status)} of {len(plan.offsets)} shards "
            f"({sum(s[2] for s in status)} lines) already encoded and verified")  # fmt: skip

    settings = EncodeSettings(batch_size, block_size, normalize, max_length, dtype)
    bar = None
    if show_progress and dist.rank == 0:
        from tqdm.auto import tqdm

        total = sum(plan.shard_lines(k) for k in mine)
        bar = tqdm(total=total, initial=reused_lines, desc="encode", unit="line", unit_scale=True,
                   dynamic_ncols=True)  # fmt: skip
    try:
        for k in todo:
            encode_shard(
                encoder, input_path, shard_dir, plan, k, settings, bar.update if bar else lambda n: None
            )
    except SimCSEError as e:
        error = str(e)
        if dist.world_size == 1:
            raise
    except Exception as e:
        if dist.world_size == 1:
            raise
        error = f"rank {dist.rank}: {type(e).__name__}: {e}"
    finally:
        if bar is not None:
            bar.close()
    _raise_first(dist.gather(error))

    merged: str | None = None
    if dist.rank == 0:
        try:
            merge_shards(shard_dir, plan, output_path)
        except SimCSEError as e:
            merged = str(e)
            if dist.world_size == 1:
                raise
    _raise_first([dist.broadcast(merged)])
    say(f"wrote {output_path}: {plan.lines} x {plan.dim} float32")
    return output_path
