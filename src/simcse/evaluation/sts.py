"""STS12-16, STS-B and SICK-R: readers for the SentEval tree and the scoring protocol.

Protocol (SimCSE's evaluation): cosine similarity of the two sentence embeddings against the gold score,
Spearman (and Pearson) correlation x 100, no regressor. STS12-16 have several subsets per year:

- ``all`` pools the pairs of every subset and computes one correlation (the paper's setting);
- ``mean`` averages the per-subset correlations; ``wmean`` weights them by subset size (SentEval's).

Readers follow SentEval: a pair whose gold line is empty is skipped while the line alignment is kept, and
each sentence is whitespace-tokenised and re-joined with single spaces (SentEval's ``split()`` followed by
SimCSE's ``' '.join``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr

from simcse.core.errors import DataError
from simcse.data.sentence_files import read_text

STS_YEARS = {
    "STS12": ("STS12-en-test", ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews")),
    "STS13": ("STS13-en-test", ("FNWN", "headlines", "OnWN")),
    "STS14": ("STS14-en-test", ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news")),
    "STS15": ("STS15-en-test", ("answers-forums", "answers-students", "belief", "headlines", "images")),
    "STS16": (
        "STS16-en-test",
        ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
    ),
}
STS_TASKS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness")
AGGREGATES = ("all", "mean", "wmean")
STSB_FILES = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}
SICK_FILES = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}


@dataclass
class Pairs:
    """Sentence pairs with gold scores; ``lines`` are the 1-based line numbers they came from."""

    a: list[str]
    b: list[str]
    gold: np.ndarray
    lines: list[int]

    def __len__(self) -> int:
        return len(self.a)


@dataclass
class STSData:
    """One STS task's split: its pairs by subset (STS12-16's source files; one for STS-B and SICK-R)."""

    name: str
    split: str
    subsets: dict[str, Pairs]

    def sentences(self) -> list[str]:
        """Every sentence of every pair, the a side then the b side of each subset (repeats kept)."""
        out: list[str] = []
        for pairs in self.subsets.values():
            out.extend(pairs.a)
            out.extend(pairs.b)
        return out

    @property
    def n(self) -> int:
        """The number of pairs over all subsets."""
        return sum(len(p) for p in self.subsets.values())


def normalize_space(text: str) -> str:
    """``text`` with every run of whitespace made one space and the ends stripped."""
    return " ".join(text.split())


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file (a BOM is dropped; CRLF and LF both end a line)."""
    return read_text(path, allow_empty=True).splitlines()


def _parse_score(value: str, path: Path, line: int) -> float:
    try:
        score = float(value)
    except ValueError as e:
        raise DataError(path, f"gold score {value!r} is not a number", line=line) from e
    if not np.isfinite(score):
        raise DataError(path, f"gold score {value!r} is not finite", line=line)
    return score


def read_sts_subset(input_path: Path, gold_path: Path) -> Pairs:
    """One SemEval subset: ``STS.input.X.txt`` (tab-separated pair) + ``STS.gs.X.txt`` (score or empty)."""
    inputs, golds = read_lines(input_path), read_lines(gold_path)
    if len(golds) > len(inputs):
        raise DataError(
            gold_path, f"{len(golds)} gold lines but {input_path.name} has only {len(inputs)} pairs"
        )
    a, b, gold, lines = [], [], [], []
    for i, (pair, score) in enumerate(zip(inputs, golds), start=1):
        if score.strip() == "":
            continue
        fields = pair.split("\t")
        if len(fields) < 2:
            raise DataError(input_path, "expected two tab-separated sentences", line=i)
        a.append(normalize_space(fields[0]))
        b.append(normalize_space(fields[1]))
        gold.append(_parse_score(score.strip(), gold_path, i))
        lines.append(i)
    return Pairs(a, b, np.asarray(gold, dtype=np.float64), lines)


def read_tabular_pairs(path: Path, cols: tuple[int, int, int], skip_header: bool) -> Pairs:
    """STS-B (score col 4, sentences 5 and 6) and SICK (1, 2, score 3): split on tabs, no csv quoting."""
    ia, ib, iscore = cols
    a, b, gold, lines = [], [], [], []
    for i, line in enumerate(read_lines(path), start=1):
        if (skip_header and i == 1) or not line.strip():
            continue
        fields = line.strip().split("\t")
        if len(fields) <= max(cols):
            raise DataError(
                path, f"expected at least {max(cols) + 1} tab-separated fields, found {len(fields)}", line=i
            )
        a.append(normalize_space(fields[ia]))
        b.append(normalize_space(fields[ib]))
        gold.append(_parse_score(fields[iscore], path, i))
        lines.append(i)
    if not a:
        raise DataError(path, "no sentence pairs")
    return Pairs(a, b, np.asarray(gold, dtype=np.float64), lines)


def load_sts_task(name: str, senteval_dir: str | Path, split: str = "test") -> STSData:
    """Read one task from the SentEval tree (``.../senteval/downstream``)."""
    root = Path(senteval_dir)
    if name in STS_YEARS:
        if split != "test":
            raise ValueError(f"{name} has only a test split")
        folder, subsets = STS_YEARS[name]
        base = root / "STS" / folder
        data = {s: read_sts_subset(base / f"STS.input.{s}.txt", base / f"STS.gs.{s}.txt") for s in subsets}
        return STSData(name, split, data)
    if name == "STSBenchmark":
        path = root / "STS" / "STSBenchmark" / STSB_FILES[split]
        return STSData(name, split, {split: read_tabular_pairs(path, (5, 6, 4), skip_header=False)})
    if name == "SICKRelatedness":
        path = root / "SICK" / SICK_FILES[split]
        return STSData(name, split, {split: read_tabular_pairs(path, (1, 2, 3), skip_header=True)})
    raise ValueError(f"unknown STS task {name!r}; choose from {', '.join(STS_TASKS)}")


def load_dev_file(path: str | Path) -> STSData:
    """Your own dev set: a csv/tsv of ``sentence1, sentence2, score`` (a first row whose score is not a
    number is a header), or a directory of SemEval-style ``STS.input.X.txt`` / ``STS.gs.X.txt`` pairs (one
    subset each, pooled as the "all" setting). Any score range: Spearman only ranks."""
    path = Path(path)
    if path.is_dir():
        inputs = sorted(path.glob("STS.input.*.txt"))
        if not inputs:
            raise DataError(path, "no STS.input.*.txt files (an STS-style dev directory has input/gs pairs)")
        subsets = {}
        for input_path in inputs:
            name = input_path.name[len("STS.input.") : -len(".txt")]
            subsets[name] = read_sts_subset(input_path, path / f"STS.gs.{name}.txt")
        data = STSData(path.name, "dev", subsets)
    else:
        data = STSData(path.stem, "dev", {"dev": _read_score_table(path)})
    if data.n < 2:
        raise DataError(path, f"{data.n} scored pair(s): a correlation needs at least 2")
    return data


def _read_score_table(path: Path) -> Pairs:
    import csv
    import io

    if path.suffix.lower() not in (".csv", ".tsv"):
        raise DataError(
            path, "a dev file is a .csv or .tsv of sentence1, sentence2, score (or an STS directory)"
        )
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    text = "\n".join(read_lines(path))
    a, b, gold, lines = [], [], [], []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quoting=quoting)
    try:
        for record in reader:
            line = reader.line_num
            if not record or all(not field.strip() for field in record):
                continue
            if len(record) != 3:
                raise DataError(
                    path, f"expected 3 columns (sentence1, sentence2, score), found {len(record)}", line=line
                )
            if not a and not lines:
                try:
                    float(record[2])
                except ValueError:
                    lines.append(0)  # a header: skipped once
                    continue
            a.append(normalize_space(record[0]))
            b.append(normalize_space(record[1]))
            gold.append(_parse_score(record[2].strip(), path, line))
            lines.append(line)
    except csv.Error as e:
        raise DataError(
            path, f"malformed {'csv' if delimiter == ',' else 'tsv'} ({e})", line=reader.line_num
        ) from e
    lines = [n for n in lines if n]
    return Pairs(a, b, np.asarray(gold, dtype=np.float64), lines)


def _correlations(pred: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    if len(gold) < 2 or np.all(pred == pred[0]) or np.all(gold == gold[0]):
        return float("nan"), float("nan")
    return float(spearmanr(pred, gold)[0]) * 100, float(pearsonr(pred, gold)[0]) * 100


def cosine_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity, in float64 for a stable rank order."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    num = (x * y).sum(1)
    den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    return num / np.maximum(den, 1e-12)


def score_sts(
    data: STSData,
    embed: Callable[[list[str]], np.ndarray] | None,
    aggregate: str = "all",
    similarity: Callable[[list[str], list[str]], np.ndarray] | None = None,
) -> dict:
    """Correlations of one task. ``embed`` maps sentences to embeddings (rows in order), scored by cosine;
    or ``similarity`` scores the pairs itself (a sentence as a set of word vectors: WMD, WRD)."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}")
    preds, golds, subsets = [], [], {}
    for sub, pairs in data.subsets.items():
        pred = (
            similarity(pairs.a, pairs.b)
            if similarity is not None
            else cosine_rows(embed(pairs.a), embed(pairs.b))
        )
        sp, pe = _correlations(pred, pairs.gold)
        subsets[sub] = {"spearman": sp, "pearson": pe, "n": len(pairs)}
        preds.append(pred)
        golds.append(pairs.gold)
    sizes = np.array([s["n"] for s in subsets.values()], dtype=np.float64)
    result = {}
    for metric in ("spearman", "pearson"):
        values = np.array([s[metric] for s in subsets.values()])
        result[metric] = {
            "all": _correlations(np.concatenate(preds), np.concatenate(golds))[metric == "pearson"],
            "mean": float(values.mean()),
            "wmean": float((values * sizes).sum() / sizes.sum()),
        }
    return {
        "spearman": result["spearman"][aggregate],
        "pearson": result["pearson"][aggregate],
        "n": data.n,
        "aggregate": aggregate,
        "split": data.split,
        "subsets": subsets if len(subsets) > 1 else {},
    }
