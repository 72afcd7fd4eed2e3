"""Sentence files (training data, sentences to index): readers whose errors name file:line.

Formats:
- ``.txt``: one sentence per line (unsup). Blank lines are skipped and counted.
- ``.csv`` / ``.tsv``: 1-4 columns: (sentence), (anchor, positive), (anchor, positive, hard negative) or
  (anchor, positive, hard negative, second hard negative).
  A first row made only of known column names (``sent0,sent1,hard_neg`` as in SimCSE's files, or
  anchor/positive/negative, premise/entailment/contradiction, sentence/text) is a header; any other first
  row is data. CSV uses standard quoting; TSV splits on tabs with no quoting.

The reader keeps the sentences (about 200 MB for the paper's 1M-line wiki file); tokenisation happens per
batch, so a 1M-line file starts training in seconds.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from simcse.core.errors import DataError

HEADER_NAMES = {
    "sent0",
    "sent1",
    "hard_neg",
    "anchor",
    "positive",
    "negative",
    "premise",
    "entailment",
    "contradiction",
    "hypothesis",
    "neutral",
    "hard_neg2",
    "sentence",
    "sentence1",
    "sentence2",
    "text",
}

MAX_COLUMNS = 4  # anchor, positive, two hard negatives (the paper's contradiction + neutral)


@dataclass
class TrainingData:
    """Rows of 1-4 sentences. ``rows[i]`` is a tuple (one column: a 1-tuple)."""

    path: str
    columns: int
    rows: list[tuple[str, ...]]
    skipped_blank: int = 0
    header: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.rows)


def read_text(path: Path, what: str = "file", allow_empty: bool = False) -> str:
    """A UTF-8 text file's content (a BOM is dropped), every failure one DataError naming the file: missing,
    a directory, unreadable, empty (unless ``allow_empty``), or not UTF-8 (with the line of the bad byte).
    ``what`` names the file's use ("training file", "input file")."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"{what} not found")
    if path.is_dir():
        raise DataError(path, f"is a directory, not a {what}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read ({e.strerror})") from e
    if not allow_empty and not data.strip():
        raise DataError(path, f"{what} is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raw = e.object  # without the BOM when there is one: e.start indexes this, not ``data``
        message = f"not valid UTF-8 (byte {raw[e.start]:#04x}); convert the file to UTF-8"
        raise DataError(path, message, line=raw[: e.start].count(b"\n") + 1) from e


def read_corpus(path: str | Path, what: str = "a corpus") -> list[str]:
    """A text file's non-empty lines, stripped; at least two (``what`` names the file's use in the error)."""
    corpus = [line.strip() for line in read_text(Path(path), allow_empty=True).splitlines() if line.strip()]
    if len(corpus) < 2:
        raise DataError(path, f"{what} needs at least two non-empty lines")
    return corpus


def read_sentences(path: str | Path, what: str = "input file") -> list[str]:
    """One sentence per line; blank lines are skipped (:func:`read_txt`'s rules)."""
    return [row[0] for row in read_txt(Path(path), what).rows]


def read_txt(path: Path, what: str = "training file") -> TrainingData:
    """One sentence per line; ``what`` names the file in errors ("training file", "input file")."""
    text = read_text(path, what)
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


def read_table(path: Path, delimiter: str, what: str = "training file") -> TrainingData:
    r"""A CSV (``delimiter`` ``,``, with quoting) or TSV (``\t``, no quoting) training file: 1 to
    :data:`MAX_COLUMNS` columns, the same number on every row, no empty field, an optional header of known
    column names; blank rows are skipped and counted. Errors name file:line."""
    text = read_text(path, what)
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
                if not 1 <= columns <= MAX_COLUMNS:
                    raise DataError(path, f"expected 1 to {MAX_COLUMNS} columns, found {columns}", line=line)
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
