"""A grid's figure: the metric per setting as mean ± std over seeds, each seed as a dot, the paper's value
as a marker; PNG and SVG (matplotlib, the ``experiments`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simcse.errors import SimCSEError
from simcse.experiments.grid import Grid
from simcse.experiments.results import DEV_COLUMNS


def pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SimCSEError("plots need matplotlib: pip install 'simcse-toolkit[experiments]'") from None
    return plt


def plot_settings(grid: Grid, rows: list[dict[str, Any]], out: Path, budget: str) -> list[Path]:
    """``out/<grid>.png`` and ``.svg``; settings with no finished cell are left out."""
    plt = pyplot()
    metric = grid.metric
    shown = [r for r in rows if metric in r["metrics"]]
    if not shown:
        return []
    label = dict(DEV_COLUMNS).get(metric, metric)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(shown) + 1.5), 3.6))
    x = range(len(shown))
    means = [r["metrics"][metric]["mean"] for r in shown]
    stds = [r["metrics"][metric]["std"] or 0.0 for r in shown]
    ax.bar(x, means, yerr=stds, capsize=4, color="#8fb8de", edgecolor="#3a6ea5", label="ours (mean ± std)")
    for i, row in enumerate(shown):
        values = row["metrics"][metric]["values"]
        ax.scatter([i] * len(values), values, s=12, color="#1f3b5c", zorder=3,
                   label="seeds" if i == 0 else None)  # fmt: skip
    paper = [(i, r["paper"]) for i, r in enumerate(shown) if r["paper"] is not None]
    if paper:
        ax.scatter([p[0] for p in paper], [p[1] for p in paper], marker="D", color="#c0392b", zorder=4,
                   label="paper")  # fmt: skip
    low = min([*means, *(p[1] for p in paper)]) - max(stds + [1.0]) * 3
    high = max([m + s for m, s in zip(means, stds)] + [p[1] for p in paper]) + 1.0
    ax.set_ylim(max(0.0, low), high)
    ax.set_xticks(list(x))
    ax.set_xticklabels([r["setting"] for r in shown], rotation=30, ha="right")
    ax.set_xlabel("setting")
    ax.set_ylabel(f"{label} (Spearman x 100)")
    ax.set_title(f"{grid.title}\n{budget}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    paths = []
    for suffix in ("png", "svg"):
        path = out / f"{grid.name}.{suffix}"
        tmp = path.with_name(f".{path.name}.tmp.{suffix}")
        fig.savefig(tmp, dpi=150)
        tmp.replace(path)
        paths.append(path)
    plt.close(fig)
    return paths
