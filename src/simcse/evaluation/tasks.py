"""The evaluation tasks by kind (STS, transfer, clustering, geometry): how a task is named, loaded from the
SentEval tree, which sentences it needs encoded, and how it is scored. :func:`simcse.evaluation.suite.evaluate`
asks the registry instead of branching on names; a new kind of task is one :class:`TaskKind` here.

Modes follow SimCSE's evaluation script:
- ``test``: STS12-16 / STS-B / SICK-R test sets (the paper's table), transfer tasks with 10 folds;
- ``dev``: STS-B and SICK-R dev sets, transfer-task dev accuracy (5 folds);
- ``fasttest``: as ``test`` with 5 folds for the transfer tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simcse.core.errors import ConfigError
from simcse.evaluation import clustering, geometry, sts

MODES = ("test", "dev", "fasttest")
TRANSFER_TASKS = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
TASK_GROUPS = {
    "sts": sts.STS_TASKS,
    "transfer": TRANSFER_TASKS,
    "full": sts.STS_TASKS + TRANSFER_TASKS,
    "geometry": ("geometry",),
    "clustering": clustering.builtin_tasks(),
}
ALL_TASKS = sts.STS_TASKS + TRANSFER_TASKS + ("geometry",) + clustering.builtin_tasks()
Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Scoring:
    """How a run scores: the STS aggregation, the mode, the transfer classifier and its seed."""

    aggregate: str = "all"
    mode: str = "test"
    seed: int = 1111
    classifier: str = "senteval"


def sts_split(mode: str) -> str:
    """The STS split a mode reads: ``dev`` in dev mode, else ``test``."""
    return "dev" if mode == "dev" else "test"


def score_geometry(data: sts.STSData, embed: Embed) -> dict:
    """Alignment of STS-B's positive pairs (gold above the threshold) and uniformity of its sentences."""
    pairs = next(iter(data.subsets.values()))
    positive = pairs.gold > geometry.POSITIVE_THRESHOLD
    a = [s for s, p in zip(pairs.a, positive) if p]
    b = [s for s, p in zip(pairs.b, positive) if p]
    unique = list(dict.fromkeys(pairs.a + pairs.b))
    return {
        "align": geometry.alignment(embed(a), embed(b)),
        "uniform": geometry.uniformity(embed(unique)),
        "n_positive": len(a),
        "n_sentences": len(unique),
        "split": data.split,
    }


def _transfer(name: str) -> Any:
    from simcse.evaluation import transfer  # its classifiers import torch: only when a transfer task runs

    return getattr(transfer, name)


@dataclass(frozen=True)
class TaskKind:
    """``matches(task)``; ``load(task, senteval_dir, mode)``; ``sentences(data)``; ``score(data, embed,
    scoring)``."""

    name: str
    matches: Callable[[str], bool]
    load: Callable[[str, Path, str], Any]
    sentences: Callable[[Any], list[str]]
    score: Callable[[Any, Embed, Scoring], dict]


KINDS = (
    TaskKind(
        "clustering",
        clustering.is_clustering,
        lambda task, root, mode: clustering.load_clustering_task(task, root),
        lambda data: data.sentences,
        lambda data, embed, scoring: clustering.score_clustering(data, embed),
    ),
    TaskKind(
        "sts",
        lambda task: task in sts.STS_TASKS,
        lambda task, root, mode: sts.load_sts_task(task, root, sts_split(mode)),
        lambda data: data.sentences(),
        lambda data, embed, scoring: sts.score_sts(data, embed, scoring.aggregate),
    ),
    TaskKind(
        "geometry",
        lambda task: task == "geometry",
        lambda task, root, mode: sts.load_sts_task("STSBenchmark", root, sts_split(mode)),
        lambda data: data.sentences(),
        lambda data, embed, scoring: score_geometry(data, embed),
    ),
    TaskKind(
        "transfer",
        lambda task: task in TRANSFER_TASKS,
        lambda task, root, mode: _transfer("load_transfer_task")(task, root),
        lambda data: _transfer("transfer_sentences")(data),
        lambda data, embed, scoring: _transfer("evaluate_transfer_task")(
            data, embed, mode=scoring.mode, seed=scoring.seed, classifier=scoring.classifier
        ),
    ),
)


def kind_of(task: str) -> TaskKind:
    """The :class:`TaskKind` whose ``matches`` accepts ``task`` (a name :func:`resolve_tasks` returned)."""
    return next(kind for kind in KINDS if kind.matches(task))


def resolve_tasks(spec: str | Sequence[str], mode: str = "test") -> list[str]:
    """``sts``, ``transfer``, ``full``, ``geometry``, ``clustering`` or a comma-separated list of task names
    (``cluster:NAME`` or ``cluster:FILE.csv`` for clustering)."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    tasks: list[str] = []
    for item in (i.strip() for i in items if i.strip()):
        if item in TASK_GROUPS:
            group = TASK_GROUPS[item]
            if mode == "dev" and item in ("sts", "full"):
                group = tuple(t for t in group if t not in sts.STS_YEARS)
            tasks.extend(group)
        elif clustering.is_clustering(item):
            tasks.append(item)  # a built-in set or a text,label file: checked when loaded
        elif item in ALL_TASKS:
            if mode == "dev" and item in sts.STS_YEARS:
                raise ConfigError(
                    f"{item} has no dev split; in dev mode use STSBenchmark and SICKRelatedness"
                )
            tasks.append(item)
        else:
            raise ConfigError(
                f"unknown task {item!r}; use sts, transfer, full, geometry, clustering, cluster:FILE.csv or "
                f"names from {', '.join(ALL_TASKS)}"
            )
    if not tasks:
        raise ConfigError("no tasks to evaluate")
    return list(dict.fromkeys(tasks))


def averages(results: dict[str, dict], mode: str) -> dict[str, float]:
    """The STS average (Spearman and Pearson) when all seven tasks were scored (in dev mode: those there),
    the transfer average over the seven transfer tasks, the clustering average over the built-in sets."""
    found = {}
    done = [t for t in sts.STS_TASKS if t in results]
    if done and (set(done) == set(TASK_GROUPS["sts"]) or mode == "dev"):
        found["sts"] = float(np.mean([results[t]["spearman"] for t in done]))
        found["sts_pearson"] = float(np.mean([results[t]["pearson"] for t in done]))
    if all(t in results for t in TRANSFER_TASKS):
        key = "devacc" if mode == "dev" else "acc"
        found["transfer"] = float(np.mean([results[t][key] for t in TRANSFER_TASKS]))
    if all(t in results for t in clustering.builtin_tasks()):
        found["clustering"] = float(np.mean([results[t]["acc"] for t in clustering.builtin_tasks()]))
    return found
