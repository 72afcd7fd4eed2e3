"""Results as the paper's tables (markdown), a JSON file and one appended CSV row per run."""

from __future__ import annotations

import csv
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

STS_COLUMNS = (
    ("STS12", "STS12"),
    ("STS13", "STS13"),
    ("STS14", "STS14"),
    ("STS15", "STS15"),
    ("STS16", "STS16"),
    ("STSBenchmark", "STS-B"),
    ("SICKRelatedness", "SICK-R"),
)
TRANSFER_COLUMNS = (
    ("MR", "MR"),
    ("CR", "CR"),
    ("SUBJ", "SUBJ"),
    ("MPQA", "MPQA"),
    ("SST2", "SST-2"),
    ("TREC", "TREC"),
    ("MRPC", "MRPC"),
)
GEOMETRY_COLUMNS = (("align", "align"), ("uniform", "uniform"))


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _table(rows: list[tuple[str, list[str]]], header: list[str]) -> str:
    widths = [
        max(len(header[i]), *(len(r[1][i - 1]) if i else len(r[0]) for r in rows)) for i in range(len(header))
    ]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for name, cells in rows:
        values = [name, *cells]
        lines.append("| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |")
    return "\n".join(lines)


def task_value(result: dict, task: str, metric: str) -> float | None:
    """The number a table shows for ``task`` in ``result``: the accuracy of a task that has one (transfer,
    clustering; a transfer task's dev accuracy in dev mode), else ``metric`` (spearman / pearson); None when
    the task was not run."""
    entry = result["tasks"].get(task)
    if entry is None:
        return None
    if "acc" in entry:
        return entry["acc"] if result.get("mode") != "dev" else entry.get("devacc", entry["acc"])
    return entry.get(metric)


def markdown_tables(results: list[dict], metric: str = "spearman") -> str:
    """One table per task family present, one row per model; an Avg. column when all tasks are there."""
    blocks = []
    for columns, avg_key in ((STS_COLUMNS, "sts"), (TRANSFER_COLUMNS, "transfer")):
        present = [(t, label) for t, label in columns if any(t in r["tasks"] for r in results)]
        if not present:
            continue
        header = ["Model", *(label for _, label in present)]
        with_avg = any(avg_key in r.get("avg", {}) for r in results)
        if with_avg:
            header.append("Avg.")
        rows = []
        for r in results:
            cells = [_fmt(task_value(r, t, metric)) for t, _ in present]
            if with_avg:
                cells.append(_fmt(r.get("avg", {}).get(avg_key)))
            rows.append((r.get("name", r.get("model", "model")), cells))
        blocks.append(_table(rows, header))
    cluster_tasks = list(dict.fromkeys(t for r in results for t in r["tasks"] if t.startswith("cluster:")))
    if cluster_tasks:
        header = ["Model (clustering acc / NMI)", *(t.split(":", 1)[1] for t in cluster_tasks)]
        with_avg = any("clustering" in r.get("avg", {}) for r in results)
        if with_avg:
            header.append("Avg. acc")
        rows = []
        for r in results:
            cells = [
                f"{r['tasks'][t]['acc']:.2f} / {r['tasks'][t]['nmi']:.2f}" if t in r["tasks"] else "-"
                for t in cluster_tasks
            ]
            if with_avg:
                cells.append(_fmt(r.get("avg", {}).get("clustering")))
            rows.append((r.get("name", r.get("model", "model")), cells))
        blocks.append(_table(rows, header))
    if any("geometry" in r["tasks"] for r in results):
        rows = [
            (
                r.get("name", r.get("model", "model")),
                [_fmt(r["tasks"]["geometry"].get(k), 4) for k, _ in GEOMETRY_COLUMNS],
            )
            for r in results
            if "geometry" in r["tasks"]
        ]
        blocks.append(_table(rows, ["Model", *(label for _, label in GEOMETRY_COLUMNS)]))
    return "\n\n".join(blocks)


def seed_summary(results: list[dict], metric: str = "spearman") -> dict:
    """Several runs of one setting (seeds): per task and per average, mean, sample std and n."""
    summary: dict = {"n": len(results), "tasks": {}, "avg": {}}
    tasks = [t for t, _ in (*STS_COLUMNS, *TRANSFER_COLUMNS) if any(t in r["tasks"] for r in results)]
    for task in tasks:
        values = [v for v in (task_value(r, task, metric) for r in results) if v is not None]
        summary["tasks"][task] = mean_std(values)
    for key in sorted({k for r in results for k in r.get("avg", {})}):
        values = [r["avg"][key] for r in results if isinstance(r.get("avg", {}).get(key), (int, float))]
        summary["avg"][key] = mean_std(values)
    return summary


def mean_std(values: list[float]) -> dict:
    """Mean, sample standard deviation (None for one value) and n, of several runs' values."""
    n = len(values)
    mean = sum(values) / n if n else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def seed_summary_table(summary: dict) -> str:
    """The mean ± std row of :func:`seed_summary`, one table per task family present."""
    blocks = []
    for columns, avg_key in ((STS_COLUMNS, "sts"), (TRANSFER_COLUMNS, "transfer")):
        present = [(t, label) for t, label in columns if t in summary["tasks"]]
        if not present:
            continue

        def cell(entry: dict | None) -> str:
            if not entry or entry["n"] == 0:
                return "-"
            text = f"{entry['mean']:.2f}" + (f" ± {entry['std']:.2f}" if entry["std"] is not None else "")
            return text if entry["n"] == summary["n"] else f"{text} (n={entry['n']})"

        header = ["Model", *(label for _, label in present)]
        cells = [cell(summary["tasks"][t]) for t, _ in present]
        if avg_key in summary["avg"]:
            header.append("Avg.")
            cells.append(cell(summary["avg"][avg_key]))
        blocks.append(_table([(f"mean ± std (n={summary['n']})", cells)], header))
    return "\n\n".join(blocks)


def write_json(result: dict, path: str | os.PathLike) -> Path:
    """Atomically: after a failure the old file, if any, stays as it was."""
    from simcse.core.files import write_text_atomic

    return write_text_atomic(path, json.dumps(result, indent=2, default=_json_default) + "\n")


def _json_default(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def append_csv(result: dict, path: str | os.PathLike, metric: str = "spearman") -> Path:
    """Append one row (timestamp, model, settings, one column per task, averages); header on first write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tasks = [t for t, _ in STS_COLUMNS + TRANSFER_COLUMNS]
    clusters = [f"cluster:{t}" for t in ("TREC", "SST2", "MR", "CR", "SUBJ", "MPQA")]
    header = [
        "time",
        "model",
        "mode",
        "aggregate",
        "metric",
        *tasks,
        "avg_sts",
        "avg_transfer",
        *clusters,
        "avg_clustering",
    ]
    row = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": result.get("model", ""),
        "mode": result.get("mode", ""),
        "aggregate": result.get("aggregate", ""),
        "metric": metric,
        "avg_sts": _fmt(result.get("avg", {}).get("sts")),
        "avg_transfer": _fmt(result.get("avg", {}).get("transfer")),
    }
    for t in tasks:
        value = task_value(result, t, metric)
        row[t] = "" if value is None else _fmt(value)
    for t in clusters:  # clustering accuracy
        row[t] = _fmt(result["tasks"][t]["acc"]) if t in result.get("tasks", {}) else ""
    row["avg_clustering"] = (
        _fmt(result.get("avg", {}).get("clustering")) if "clustering" in result.get("avg", {}) else ""
    )
    new = not path.exists() or path.stat().st_size == 0
    if not new:  # a file started by an older simcse keeps its columns
        with path.open(encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), header) or header
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
    return path
