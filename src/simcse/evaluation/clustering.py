"""Clustering evaluation: k-means on the embeddings of a labelled sentence set, with as many clusters as
labels, scored by clustering accuracy (the best one-to-one matching of clusters to labels, Hungarian
algorithm) and normalised mutual information; mean ± std over several k-means seeds, each deterministic.

Sets (task names ``cluster:NAME``; ``clustering`` = the six built-in ones):
- ``TREC`` (test split, 500 questions, 6 coarse classes), ``SST2`` (test split, 1,821), and ``MR``, ``CR``,
  ``SUBJ``, ``MPQA`` (all sentences) from the SentEval tree, read by :mod:`simcse.evaluation.transfer`;
- ``cluster:PATH``: a user's ``text,label`` csv (or tsv), header optional.

k-means is scikit-learn's (k-means++ initialisation, ``n_init=1`` per seed, so that each seed is one run
and the spread over seeds is shown rather than hidden), on L2-normalised embeddings (cosine geometry, as
the STS evaluation); the matching is scipy's ``linear_sum_assignment``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simcse.core.errors import ConfigError, DataError

PREFIX = "cluster:"
BUILTIN = ("TREC", "SST2", "MR", "CR", "SUBJ", "MPQA")
SEEDS = (0, 1, 2, 3, 4)


@dataclass
class ClusterData:
    """A labelled sentence set: ``labels[i]`` is the id (0..k-1) of ``label_names`` for ``sentences[i]``."""

    name: str
    sentences: list[str]
    labels: np.ndarray  # integer ids 0..k-1
    label_names: list[str]


def is_clustering(task: str) -> bool:
    """Whether ``task`` is a clustering task (``cluster:NAME``)."""
    return task.startswith(PREFIX)


def builtin_tasks() -> tuple[str, ...]:
    """The built-in clustering tasks' names: ``cluster:`` + each of :data:`BUILTIN`."""
    return tuple(PREFIX + name for name in BUILTIN)


def _from_pairs(name: str, pairs: list[tuple[str, object]]) -> ClusterData:
    names = sorted({str(label) for _, label in pairs})
    ids = {label: i for i, label in enumerate(names)}
    return ClusterData(name, [s for s, _ in pairs], np.array([ids[str(label)] for _, label in pairs]), names)


def read_labelled_file(path: Path) -> ClusterData:
    """``text,label`` rows (csv, or tsv by suffix); a header ``text,label`` (or ``sentence,label``) is skipped."""
    if not path.is_file():
        raise DataError(path, "no such file (expected text,label rows)")
    delimiter = "\t" if path.suffix == ".tsv" else ","
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, delimiter=delimiter))
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e.reason})") from None
    pairs = []
    for number, row in enumerate(rows, 1):
        if not row or not "".join(row).strip():
            continue
        if number == 1 and [c.strip().lower() for c in row] in (["text", "label"], ["sentence", "label"]):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise DataError(path, f"expected 2 columns (text, label), found {len(row)}", line=number)
        pairs.append((row[0].strip(), row[1].strip()))
    data = _from_pairs(path.stem, pairs)
    if len(data.label_names) < 2:
        raise DataError(path, "clustering needs at least two labels")
    return data


def load_clustering_task(task: str, senteval_dir: str | Path) -> ClusterData:
    """``cluster:NAME``'s data: a built-in name is that SentEval transfer set (its test split, else all of
    it); otherwise NAME is a ``text,label`` csv/tsv file."""
    from simcse.evaluation.transfer import load_transfer_task

    name = task[len(PREFIX) :]
    if name in BUILTIN:
        data = load_transfer_task(name, senteval_dir)
        split = "test" if "test" in data.splits else "all"
        return _from_pairs(name, [(s, label) for s, label in data.splits[split]])
    path = Path(name).expanduser()
    if path.suffix in (".csv", ".tsv") or path.exists():
        return read_labelled_file(path)
    raise ConfigError(
        f"unknown clustering set {name!r}; use {', '.join(BUILTIN)} or a text,label csv/tsv file"
    )


def clustering_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """The share of sentences whose cluster maps to their label under the best one-to-one matching."""
    from scipy.optimize import linear_sum_assignment

    k = int(max(labels.max(), clusters.max())) + 1
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(labels))


def score_clustering(data: ClusterData, embed, seeds: tuple[int, ...] = SEEDS) -> dict:
    """Accuracy and NMI (x 100) per k-means seed, and their mean and sample std."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    x = embed(data.sentences).astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    k = len(data.label_names)
    acc, nmi = [], []
    for seed in seeds:
        clusters = KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(x)
        acc.append(100 * clustering_accuracy(data.labels, clusters))
        nmi.append(100 * normalized_mutual_info_score(data.labels, clusters))

    def std(values: list[float]) -> float:
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    return {
        "acc": float(np.mean(acc)),
        "acc_std": std(acc),
        "nmi": float(np.mean(nmi)),
        "nmi_std": std(nmi),
        "acc_per_seed": acc,
        "nmi_per_seed": nmi,
        "k": k,
        "n": len(data.sentences),
        "seeds": list(seeds),
    }
