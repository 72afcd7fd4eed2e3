"""A grid's figure: the metric per setting as mean ± std over seeds, each seed as a dot, the paper's value
as a marker; PNG and SVG (matplotlib, the ``experiments`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simcse.core.errors import SimCSEError
from simcse.core.files import atomic_path
from simcse.experiments.grid import Grid
from simcse.experiments.results import DEV_COLUMNS


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (SVG text kept as text); a missing matplotlib is a SimCSEError
    naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.rcParams["svg.fonttype"] = "none"  # text stays text in the SVG: searchable and editable
    except ImportError:
        raise SimCSEError("plots need matplotlib: pip install 'simcse-toolkit[experiments]'") from None
    return plt


AXES_SHARE = 0.6  # of the figure's width: the legend stands outside the axes, on the right


def wrap_to(text: str, inches: float, points: float) -> list[str]:
    """``text`` in lines that fit ``inches`` at a font of ``points`` (a character is about half as wide as
    the font is high)."""
    import textwrap

    return textwrap.wrap(text, max(20, int(inches * 72 / (points * 0.55))))


def plot_settings(grid: Grid, rows: list[dict[str, Any]], out: Path, budget: str) -> list[Path]:
    """``out/<grid>.png`` and ``.svg``; settings with no finished cell are left out."""
    plt = pyplot()
    metric = grid.metric
    shown = [r for r in rows if metric in r["metrics"]]
    if not shown:
        return []
    label = dict(DEV_COLUMNS).get(metric, metric)
    width = max(5.0, 0.9 * len(shown) + 3.0)
    fig, ax = plt.subplots(figsize=(width, 4.0))
    x = range(len(shown))
    means = [r["metrics"][metric]["mean"] for r in shown]
    stds = [r["metrics"][metric]["std"] or 0.0 for r in shown]
    ax.bar(x, means, yerr=stds, capsize=4, color="#8fb8de", edgecolor="#3a6ea5", label="ours (mean ± std)")
    for i, row in enumerate(shown):
        values = row["metrics"][metric]["values"]
        ax.scatter(
            [i] * len(values), values, s=12, color="#1f3b5c", zorder=3, label="seeds" if i == 0 else None
        )
    paper = [(i, r["paper"]) for i, r in enumerate(shown) if r["paper"] is not None]
    if paper:
        ax.scatter(
            [p[0] for p in paper], [p[1] for p in paper], marker="D", color="#c0392b", zorder=4, label="paper"
        )
    low = min([*means, *(p[1] for p in paper)]) - max(stds + [1.0]) * 3
    high = max([m + s for m, s in zip(means, stds)] + [p[1] for p in paper]) + 1.0
    ax.set_ylim(max(0.0, low), high)
    ax.set_xticks(list(x))
    ax.set_xticklabels([r["setting"] for r in shown], rotation=30, ha="right")
    ax.set_xlabel("setting")
    ax.set_ylabel(f"{label} (Spearman x 100)")
    ax.set_title(grid.title + "\n" + "\n".join(wrap_to(budget, width * AXES_SHARE, 8)), fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar or marker
    fig.tight_layout()
    paths = save_figure(fig, out / grid.name)
    plt.close(fig)
    return paths


def read_metrics(run: Path) -> list[dict[str, Any]]:
    """A run's ``metrics.jsonl`` records; a missing file or a broken line is a one-line error naming it."""
    import json

    path = Path(run) / "metrics.jsonl" if Path(run).is_dir() else Path(run)
    if not path.is_file():
        raise SimCSEError(f"{path}: no metrics.jsonl here (give a run directory of simcse train)")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise SimCSEError(f"{path}:{number}: not a JSON record") from None
        if isinstance(record, dict):
            records.append(record)
    return records


def _last_per_step(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """One record per step (a resumed run logs some steps twice: the later one counts), in step order."""
    by_step = {r["step"]: r for r in records if r.get("kind") == kind and isinstance(r.get("step"), int)}
    return [by_step[s] for s in sorted(by_step)]


def save_figure(fig: Any, out: Path) -> list[Path]:
    """``out``.png and ``out``.svg, each written to a temporary name and renamed into place."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix("") if out.suffix in (".png", ".svg") else out
    paths = []
    for suffix in ("png", "svg"):
        path = stem.with_name(f"{stem.name}.{suffix}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=150, format=suffix)
        paths.append(path)
    return paths


def plot_geometry(runs: list[Path], out: Path, labels: list[str] | None = None) -> list[Path]:
    """Uniformity (x) against alignment (y) of each run's ``geometry`` records, arrows in step order (the
    paper's Figure 2: lower is better on both axes). A run without such records is an error naming it."""
    plt = pyplot()
    labels = labels or [Path(r).name for r in runs]
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for run, label in zip(runs, labels):
        points = _last_per_step(read_metrics(run), "geometry")
        if not points:
            raise SimCSEError(
                f"{run}: no alignment/uniformity records; train with --geometry_steps N (e.g. 10)"
            )
        xs, ys = [p["uniform"] for p in points], [p["align"] for p in points]
        (line,) = ax.plot(xs, ys, marker="o", markersize=3, linewidth=1, label=label)
        for i in range(len(xs) - 1):
            ax.annotate(
                "",
                xy=(xs[i + 1], ys[i + 1]),
                xytext=(xs[i], ys[i]),
                arrowprops={"arrowstyle": "->", "color": line.get_color(), "lw": 1},
            )
        ax.annotate(
            f"step {points[-1]['step']}",
            (xs[-1], ys[-1]),
            fontsize=6,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("uniformity (lower is better)")
    ax.set_ylabel("alignment (lower is better)")
    ax.set_title("Alignment and uniformity on STS-B dev during training", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = save_figure(fig, out)
    plt.close(fig)
    return paths


def plot_curves(runs: list[Path], out: Path, labels: list[str] | None = None) -> list[Path]:
    """Training loss and the dev score (the first dev metric each run logged) over steps, one line per run."""
    plt = pyplot()
    labels = labels or [Path(r).name for r in runs]
    fig, (loss_ax, dev_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    dev_name = None
    for run, label in zip(runs, labels):
        records = read_metrics(run)
        train = _last_per_step(records, "train")
        if train:
            loss_ax.plot([r["step"] for r in train], [r["loss"] for r in train], linewidth=1, label=label)
        evals = _last_per_step(records, "eval")
        metric = next(
            (k for k in ("stsb_spearman", "dev_spearman", "sickr_spearman") if evals and k in evals[0]), None
        )
        if metric:
            dev_name = dev_name or metric
            dev_ax.plot(
                [r["step"] for r in evals], [r[metric] for r in evals], marker="o", markersize=3, label=label
            )
        if not train and not evals:
            raise SimCSEError(f"{run}: metrics.jsonl has no train or eval records")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss")
    dev_ax.set_xlabel("step")
    dev_ax.set_ylabel(f"{dict(DEV_COLUMNS).get(dev_name or '', dev_name or 'dev')} (Spearman x 100)")
    for ax in (loss_ax, dev_ax):
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.tight_layout()
    paths = save_figure(fig, out)
    plt.close(fig)
    return paths
