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
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from simcse.core.errors import DataError, SimCSEError
from simcse.core.runtime import Dist
from simcse.data.corpus_files import (
    DEFAULT_BLOCK_SIZE,
    Plan,
    iter_line_blocks,
    merge_shards,
    npy_header,
    prepare_plan,
    shard_dir_for,
    shard_is_complete,
    shard_path,
    sidecar_path,
    write_json,
)
from simcse.modeling.sentence_encoder import SentenceEncoder

DIST_TIMEOUT = datetime.timedelta(hours=24)


# ---------------------------------------------------------------------------------------------- encoding
@dataclass
class EncodeSettings:
    """How each shard is encoded: sentences per batch, lines read per block, unit rows or not, truncation
    (None: the model's) and the dtype."""

    batch_size: int
    block_size: int
    normalize: bool
    max_length: int | None
    dtype: torch.dtype | None


def encode_shard(
    encoder: SentenceEncoder,
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
    write_json(sidecar_path(shard_dir, k), {"lines": rows, "dim": plan.dim, "sha256": h.hexdigest()})


# ---------------------------------------------------------------------------------------------- distributed
def _raise_first(errors: list[str | None]) -> None:
    for e in errors:
        if e:
            raise SimCSEError(e)


# ---------------------------------------------------------------------------------------------- entry point
def encode_corpus(
    model: SentenceEncoder | str | os.PathLike | None,
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
    precision: str = "auto",
    backend: str = "torch",
) -> Path:
    """Encode every line of ``input_path`` into ``output_path`` (.npy, float32, (n_lines, dim)); see the
    module docstring. ``model`` is an :class:`Encoder`, a model path / hub id, or None for the embedded
    model. ``shard_size`` defaults to the interrupted run's (when resuming) or 100,000 lines.
    ``overwrite`` replaces an existing output and discards the shards of any earlier run. ``precision``
    (auto | fp32 | bf16 | fp16) applies unless ``dtype`` is given; ``backend`` onnx / openvino encodes with
    an exported graph (:mod:`simcse.modeling.loading`). Returns the output path (on every rank under torchrun)."""
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
            dist,
            model,
            input_path,
            output_path,
            batch_size,
            max_length,
            pooler,
            dtype,
            normalize,
            shard_size,
            block_size,
            overwrite,
            device,
            show_progress,
            log,
            precision,
            backend,
        )
    except BaseException:
        dist.close(wait=False)
        raise
    dist.close()
    return result


def _encode_corpus(
    dist: Dist,
    model: SentenceEncoder | str | os.PathLike | None,
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
    precision: str = "auto",
    backend: str = "torch",
) -> Path:
    """Plan (rank 0), check the shards of an earlier run, encode this rank's missing shards, merge
    (rank 0). Every phase ends with the ranks agreeing on its outcome, so one rank's error stops them all."""
    say = log if (log is not None and dist.rank == 0) else (lambda message: None)
    from simcse.core.runtime import encoding_precision

    if backend == "auto":
        from simcse.modeling.graph_encoder import choose_backend

        backend, chosen = choose_backend(model)
        say(chosen)

    device = device or (
        f"cuda:{dist.local_rank}" if torch.cuda.is_available() and backend == "torch" else "cpu"
    )
    encoder = _encoder(model, pooler, max_length, device, precision, backend)
    graph_line = encoder.line if backend != "torch" else None
    dtype, line = encoding_precision(precision, device, dtype, graph_line)
    key = {
        "model": {"fingerprint": encoder.fingerprint(), "source": str(encoder.source)},
        "settings": {
            "pooler": encoder.inference_pooler,
            "max_length": max_length or encoder.max_length,  # None: an encoder without tokens
            "normalize": bool(normalize),
            "dtype": str(dtype or torch.float32).removeprefix("torch."),
        },
    }
    if backend != "torch":
        key["settings"]["backend"] = f"{backend} {encoder.precision}"
    shard_dir = shard_dir_for(output_path)
    plan = _agree_on_plan(dist, input_path, output_path, shard_dir, key, encoder.dim, shard_size, overwrite)
    mine = list(range(dist.rank, len(plan.offsets), dist.world_size))
    todo, reused_lines = _missing_shards(dist, shard_dir, plan, mine, say)
    settings = EncodeSettings(batch_size, block_size, normalize, max_length, dtype)
    bar = None
    if show_progress and dist.rank == 0:
        from tqdm.auto import tqdm

        total = sum(plan.shard_lines(k) for k in mine)
        bar = tqdm(
            total=total, initial=reused_lines, desc="encode", unit="line", unit_scale=True, dynamic_ncols=True
        )
    error = None
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
    say(f"wrote {output_path}: {plan.lines} x {plan.dim} float32; {line}")
    return output_path


def _encoder(
    model: SentenceEncoder | str | os.PathLike | None,
    pooler: str | None,
    max_length: int | None,
    device: str | torch.device,
    precision: str = "auto",
    backend: str = "torch",
) -> SentenceEncoder:
    """The encoder, checked before any file is written (a baseline, or
    :func:`~simcse.modeling.loading.load_encoder`'s)."""
    from simcse.baselines.encoder import load_model_or_baseline
    from simcse.modeling.sentence_encoder import require_fixed_vectors

    encoder = load_model_or_baseline(model, pooler, backend, precision, max_length=max_length)
    require_fixed_vectors(encoder, "encoding a corpus in blocks")
    if not isinstance(model, SentenceEncoder):  # loaded here: this job places it
        encoder.to(device)
    encoder.eval()
    return encoder


def _agree_on_plan(
    dist: Dist,
    input_path: Path,
    output_path: Path,
    shard_dir: Path,
    key: dict,
    dim: int,
    shard_size: int | None,
    overwrite: bool,
) -> Plan:
    """Rank 0 scans the input and writes (or checks) the manifest; every rank gets its plan or its error."""
    plan_json: dict | str | None = None
    if dist.rank == 0:
        try:
            output_path.parent.mkdir(parents=True, exist_ok=True)
            plan_json = prepare_plan(input_path, shard_dir, key, dim, shard_size, overwrite).to_json()
        except SimCSEError as e:
            dist.broadcast(str(e))
            raise
        except Exception as e:
            dist.broadcast(f"rank 0 failed: {type(e).__name__}: {e}")
            raise
    plan_json = dist.broadcast(plan_json)
    if isinstance(plan_json, str):
        raise SimCSEError(plan_json)
    return Plan.from_json(plan_json)


def _missing_shards(
    dist: Dist, shard_dir: Path, plan: Plan, mine: list[int], say: Callable[[str], None]
) -> tuple[list[int], int]:
    """This rank's shards still to encode (a shard whose sidecar or checksum fails is encoded again), and
    the lines of those already done."""
    error: str | None = None
    todo: list[int] = []
    reused_lines = 0
    try:
        for k in mine:
            if shard_is_complete(shard_dir, k, plan):
                reused_lines += plan.shard_lines(k)
            else:
                sidecar_path(shard_dir, k).unlink(missing_ok=True)
                todo.append(k)
    except OSError as e:
        error = f"{shard_dir}: cannot check the shards of an earlier run ({e})"
    status = dist.gather((error, len(mine) - len(todo), reused_lines))
    _raise_first([s[0] for s in status])
    if sum(s[1] for s in status):
        say(
            f"resuming: {sum(s[1] for s in status)} of {len(plan.offsets)} shards "
            f"({sum(s[2] for s in status)} lines) already encoded and verified"
        )
    return todo, reused_lines
