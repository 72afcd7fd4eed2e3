"""Training data: readers with clear errors, deterministic batching, views, dynamic padding, MLM masking.

Formats:
- ``.txt``: one sentence per line (unsup). Blank lines are skipped and counted.
- ``.csv`` / ``.tsv``: 1-3 columns: (sentence), (anchor, positive) or (anchor, positive, hard negative).
  A first row made only of known column names (``sent0,sent1,hard_neg`` as in SimCSE's files, or
  anchor/positive/negative, premise/entailment/contradiction, sentence/text) is a header; any other first
  row is data. CSV uses standard quoting; TSV splits on tabs with no quoting.

The reader keeps the sentences (about 200 MB for the paper's 1M-line wiki file); tokenisation happens per
batch, so a 1M-line file starts training in seconds.
"""

from __future__ import annotations

import csv
import io
import queue
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simcse.errors import DataError

HEADER_NAMES = {
    "sent0", "sent1", "hard_neg", "anchor", "positive", "negative", "premise", "entailment",
    "contradiction", "hypothesis", "sentence", "sentence1", "sentence2", "text",
}  # fmt: skip


@dataclass
class TrainingData:
    """Rows of 1-3 sentences. ``rows[i]`` is a tuple (one column: a 1-tuple)."""

    path: str
    columns: int
    rows: list[tuple[str, ...]]
    skipped_blank: int = 0
    header: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.rows)


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raw = e.object  # without the BOM when there is one: e.start indexes this, not ``data``
        message = f"not valid UTF-8 (byte {raw[e.start]:#04x}); convert the file to UTF-8"
        raise DataError(path, message, line=raw[: e.start].count(b"\n") + 1) from e


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(path, "training file not found")
    if path.is_dir():
        raise DataError(path, "is a directory, not a training file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read ({e.strerror})") from e
    if not data.strip():
        raise DataError(path, "training file is empty")
    return data


def read_txt(path: Path) -> TrainingData:
    text = _decode(path, _read_bytes(path))
    rows, blank = [], 0
    for i, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if "\x00" in line:
            raise DataError(path, "contains a NUL byte; not a text file", line=i)
        if not line.strip():
            blank += 1
            continue
        rows.append((line,))
    if text.endswith("\n"):
        blank -= 1  # the empty string after the final newline is not a line
    if not rows:
        raise DataError(path, "no sentences (only blank lines)")
    return TrainingData(str(path), 1, rows, skipped_blank=blank)


def read_table(path: Path, delimiter: str) -> TrainingData:
    text = _decode(path, _read_bytes(path))
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    rows: list[tuple[str, ...]] = []
    header = None
    columns = 0
    blank = 0
    start = 1  # the line the next record starts on (a quoted field may span lines)
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record or all(not field.strip() for field in record):
                blank += 1
                continue
            if "\x00" in "".join(record):
                raise DataError(path, "contains a NUL byte; not a text file", line=line)
            if columns == 0:
                columns = len(record)
                if not 1 <= columns <= 3:
                    raise DataError(path, f"expected 1 to 3 columns, found {columns}", line=line)
                if header is None and all(f.strip().lower() in HEADER_NAMES for f in record):
                    header = tuple(f.strip() for f in record)
                    continue
            if len(record) != columns:
                raise DataError(path, f"expected {columns} columns, found {len(record)}", line=line)
            for k, field in enumerate(record, start=1):
                if not field.strip():
                    raise DataError(path, f"column {k} is empty", line=line)
            rows.append(tuple(record))
    except csv.Error as e:
        raise DataError(path, f"malformed {'CSV' if delimiter == ',' else 'TSV'} ({e})", line=start) from e
    if not rows:
        raise DataError(path, "has a header but no rows" if header else "no rows")
    return TrainingData(str(path), columns, rows, skipped_blank=blank, header=header)


def read_training_file(path: str | Path, max_samples: int = 0) -> TrainingData:
    """Read a training file; the format follows the extension (.txt, .csv, .tsv)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        data = read_txt(path)
    elif suffix == ".csv":
        data = read_table(path, ",")
    elif suffix == ".tsv":
        data = read_table(path, "\t")
    else:
        raise DataError(path, f"unknown training file type {suffix or '(none)'!r}; use .txt, .csv or .tsv")
    if max_samples:
        data.rows = data.rows[:max_samples]
    return data


# ---------------------------------------------------------------------------------------------- batching
@dataclass
class BatchPlan:
    """Which rows make up each step: a seeded permutation per epoch, cut into global batches.

    Every process computes the same plan and takes its own slice of each global batch, so the data position
    is just (epoch, step in epoch).
    """

    num_rows: int
    batch_size: int
    seed: int
    shuffle: bool = True
    drop_last: bool = False

    @property
    def steps_per_epoch(self) -> int:
        full, rest = divmod(self.num_rows, self.batch_size)
        return full + (1 if rest >= 2 and not self.drop_last else 0)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_rows)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_rows)

    def batch(
        self, epoch: int, step: int, rank: int = 0, world_size: int = 1, order: np.ndarray | None = None
    ):
        order = self.order(epoch) if order is None else order
        rows = order[step * self.batch_size : (step + 1) * self.batch_size]
        per_rank = len(rows) // world_size
        return rows[rank * per_rank : (rank + 1) * per_rank]

    def iterate(
        self, start_epoch: int, start_step: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple]:
        """Yield (epoch, step_in_epoch, row indices) forever from the given position."""
        epoch, step = start_epoch, start_step
        while True:
            order = self.order(epoch)
            while step < self.steps_per_epoch:
                yield epoch, step, self.batch(epoch, step, rank, world_size, order)
                step += 1
            epoch, step = epoch + 1, 0


# ---------------------------------------------------------------------------------------------- collation
class MLMMasker:
    """BERT masking of a copy of the inputs: 15% of real tokens; 80% [MASK], 10% random, 10% unchanged."""

    def __init__(self, tokenizer, probability: float = 0.15):
        if tokenizer.mask_token_id is None:
            raise DataError(
                getattr(tokenizer, "name_or_path", "tokenizer"), "has no [MASK] token; MLM is impossible"
            )
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.probability = probability

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ids = input_ids.clone()
        labels = input_ids.clone()
        maskable = attention_mask.bool() & ~torch.isin(input_ids, self.special)
        chosen = torch.bernoulli(torch.full(ids.shape, self.probability)).bool() & maskable
        labels[~chosen] = -100
        replace = torch.bernoulli(torch.full(ids.shape, 0.8)).bool() & chosen
        ids[replace] = self.mask_id
        randomize = torch.bernoulli(torch.full(ids.shape, 0.5)).bool() & chosen & ~replace
        ids[randomize] = torch.randint(self.vocab_size, ids.shape, dtype=torch.long)[randomize]
        return ids, labels


class Collator:
    """Rows -> one padded batch of ``rows x views`` sequences, view-major within each row.

    unsup: every sentence appears twice (two dropout masks = the positive pair), tokenised once.
    sup: the columns are the views (anchor, positive[, hard negative]).
    ``pad_to_length`` pads every batch to one length (static shapes for ``torch.compile``); otherwise
    batches are padded to their longest sequence. No randomness here (it may run in a prefetch thread):
    MLM masking happens in the training loop.
    """

    def __init__(self, tokenizer, max_seq_len: int, views: int, pad_to_length: int | None = None):
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.views = views
        self.pad_to_length = pad_to_length

    def __call__(self, rows: Sequence[tuple[str, ...]]) -> dict[str, torch.Tensor]:
        columns = len(rows[0])
        flat = [s for row in rows for s in row]
        ids = self.tokenizer(flat, truncation=True, max_length=self.max_seq_len, return_attention_mask=False,
                             return_token_type_ids=False)["input_ids"]  # fmt: skip
        if columns == 1 and self.views == 2:
            ids = [x for x in ids for _ in range(2)]
        from simcse.encoder import pad_batch

        batch = pad_batch(ids, self.tokenizer.pad_token_id, self.pad_to_length)
        batch["views"] = torch.tensor(self.views)
        return batch


class Prefetcher:
    """Collates the next batches in a background thread (tokenisers release the GIL), optionally into
    pinned memory for non-blocking copies to the GPU, so the accelerator does not wait for the data."""

    def __init__(self, batches: Iterator[tuple], rows: list[tuple[str, ...]], collate: Collator, depth: int = 4,
                 pin_memory: bool = False):  # fmt: skip
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()

        def work() -> None:
            try:
                for epoch, step, idx in batches:
                    batch = collate([rows[i] for i in idx])
                    if pin_memory:
                        batch = {k: v.pin_memory() for k, v in batch.items()}
                    if not self._put((epoch, step, idx, batch)):
                        return
            except BaseException as e:  # surfaced in the training loop
                self._put(e)

        self._thread = threading.Thread(target=work, name="simcse-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Wait for room in the queue; False once closed (so a full queue never blocks the thread's exit)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> tuple:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
