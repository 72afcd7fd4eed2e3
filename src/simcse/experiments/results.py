"""A grid's results over seeds: mean ± std and n per setting, written as ``results.md`` (the paper's
layout: one row per setting), ``results.json`` (every cell and every aggregate) and ``results.csv``."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from simcse.core.files import write_text_atomic
from simcse.evaluation.report import STS_COLUMNS
from simcse.evaluation.report import mean_std as seed_mean_std
from simcse.experiments.grid import Grid
from simcse.experiments.runner import CellResult

DEV_COLUMNS = (("stsb_spearman", "STS-B dev"), ("sickr_spearman", "SICK-R dev"), ("dev_spearman", "dev"))


def mean_std(values: list[float]) -> tuple[float, float | None, int]:
    """Mean, sample standard deviation (None for one value) and n."""
    entry = seed_mean_std(values)
    return entry["mean"], entry["std"], entry["n"]


def summarize(grid: Grid, results: list[CellResult]) -> list[dict[str, Any]]:
    """One row per setting, in grid order: for every metric any of its cells has, mean / std / n over
    the cells that finished, and the seeds that failed."""
    rows = []
    for setting in grid.settings:
        mine = [r for r in results if r.setting == setting.name]
        ok = [r for r in mine if r.status != "failed"]
        metrics: dict[str, dict[str, Any]] = {}
        for key in dict.fromkeys(k for r in ok for k in r.metrics):
            values = [r.metrics[key] for r in ok if key in r.metrics]
            mean, std, n = mean_std(values)
            metrics[key] = {"mean": mean, "std": std, "n": n, "values": values}
        rows.append(
            {
                "setting": setting.name,
                "overrides": setting.overrides,
                "seeds": [r.seed for r in ok],
                "failed_seeds": [r.seed for r in mine if r.status == "failed"],
                "metrics": metrics,
                "paper": grid.paper.get(setting.name),
            }
        )
    return rows


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    return f"{entry['mean']:.2f} ± {entry['std']:.2f}" if entry["std"] is not None else f"{entry['mean']:.2f}"


def _columns(rows: list[dict[str, Any]], metric: str) -> list[tuple[str, str]]:
    present = {k for row in rows for k in row["metrics"]}
    present -= {k for k, _ in TIME_COLUMNS}
    labels = {**dict(DEV_COLUMNS), "test_avg_sts": "STS avg.", "test_avg_transfer": "transfer avg."}
    columns = [(metric, labels.get(metric, metric))]
    columns += [(k, label) for k, label in DEV_COLUMNS if k in present and k != metric]
    columns += [(f"test_{t}", label) for t, label in STS_COLUMNS if f"test_{t}" in present]
    for key, label in (("test_avg_sts", "STS avg."), ("test_avg_transfer", "transfer avg.")):
        if key in present and key != metric:
            columns.append((key, label))
    return columns


TIME_COLUMNS = (("wall_s", "wall s"), ("train_s_per_1000_steps", "s / 1k steps"))


def _time_cells(row: dict[str, Any], first: dict[str, Any] | None) -> list[str]:
    """Wall time, training time per 1,000 steps, and that time relative to the first row's."""
    cells = []
    for key, _ in TIME_COLUMNS:
        entry = row["metrics"].get(key)
        cells.append(f"{entry['mean']:.0f}" if entry else "-")
    mine = row["metrics"].get("train_s_per_1000_steps")
    base = (first or {}).get("metrics", {}).get("train_s_per_1000_steps")
    cells.append(f"{mine['mean'] / base['mean']:.2f}x" if mine and base else "-")
    return cells


def markdown(grid: Grid, rows: list[dict[str, Any]], budget: str) -> str:
    """``results.md``: the grid's title and description, then one row per setting: each metric's mean ± std, n
    (and failed seeds), the times when measured, and the paper's value when the grid has one."""
    metric = grid.metric
    columns = _columns(rows, metric)
    with_paper = any(row["paper"] is not None for row in rows)
    timed = any(k in row["metrics"] for row in rows for k, _ in TIME_COLUMNS)
    times = [*(label for _, label in TIME_COLUMNS), f"time vs {rows[0]['setting']}"] if timed and rows else []
    header = ["Setting", *(label for _, label in columns), "n", *times, *(["paper"] if with_paper else [])]
    lines = [f"## {grid.title}", ""]
    if grid.description:
        lines += [grid.description, ""]
    lines += [f"Mean ± sample std over seeds; {budget}.", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        n = row["metrics"].get(metric, {}).get("n", 0)
        failed = f" ({len(row['failed_seeds'])} failed)" if row["failed_seeds"] else ""
        cells = [row["setting"], *(_cell(row["metrics"].get(k)) for k, _ in columns), f"{n}{failed}"]
        if times:
            cells += _time_cells(row, rows[0])
        if with_paper:
            cells.append(f"{row['paper']:.1f}" if row["paper"] is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    if with_paper and grid.paper_source:
        lines += ["", f"paper: {grid.paper_source}"]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]]) -> str:
    """``results.csv``: one row per setting, each metric's mean and std, n and the paper's value."""
    keys = list(dict.fromkeys(k for row in rows for k in row["metrics"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["setting", "n", *(f"{k}_{s}" for k in keys for s in ("mean", "std")), "paper"])
    for row in rows:
        entries = [row["metrics"].get(k) for k in keys]
        n = max((e["n"] for e in entries if e), default=0)
        values = []
        for entry in entries:
            values += (
                [f"{entry['mean']:.4f}", "" if entry["std"] is None else f"{entry['std']:.4f}"]
                if entry
                else ["", ""]
            )
        writer.writerow([row["setting"], n, *values, "" if row["paper"] is None else row["paper"]])
    return buffer.getvalue()


def write_results(grid: Grid, results: list[CellResult], out: Path, budget: str) -> list[dict[str, Any]]:
    """results.md, results.json and results.csv in ``out``; returns the summary rows."""
    rows = summarize(grid, results)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.md", markdown(grid, rows, budget))
    payload = {
        "grid": grid.name,
        "title": grid.title,
        "metric": grid.metric,
        "budget": budget,
        "paper_source": grid.paper_source,
        "settings": rows,
        "cells": [asdict(r) for r in results],
    }
    write_text_atomic(out / "results.json", json.dumps(payload, indent=2) + "\n")
    write_text_atomic(out / "results.csv", csv_text(rows))
    return rows
