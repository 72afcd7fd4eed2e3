"""The paper's analyses as grids of training runs: :func:`run_experiment` runs a grid (a built-in name such
as ``dropout`` or a YAML file) over seeds and writes its table and plot."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simcse.experiments.grid import Cell, Grid, builtin_grids, cells, load_grid
from simcse.modeling.names import EMBEDDED_NAME

if TYPE_CHECKING:  # the runner imports the training run directory (and torch): only when a grid runs
    from simcse.experiments.runner import CellResult

__all__ = ["ExperimentResult", "builtin_grids", "load_grid", "run_experiment"]


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` did: the grid, its output directory, every cell's result, one summary row
    per setting and the files written."""

    grid: Grid
    out: Path
    cells: list[CellResult]
    rows: list[dict[str, Any]]  # one per setting: mean / std / n of every metric
    files: list[Path]

    @property
    def failed(self) -> list[CellResult]:
        """The cells whose run failed."""
        return [c for c in self.cells if c.status == "failed"]


def budget_of(todo: list[Cell], seeds: int) -> str:
    """The budget in words, from the cells' configs: a value the settings vary (the training file, the
    batch) is said to vary rather than read from the first cell."""

    def shared(what: str, describe: Callable[[Any], str]) -> str:
        values = {describe(cell.config) for cell in todo}
        return values.pop() if len(values) == 1 else f"each setting's {what}"

    model = shared("model", lambda c: c.model_name_or_path or f"the embedded {EMBEDDED_NAME}")
    length = shared(
        "number of steps", lambda c: f"{c.max_steps} steps" if c.max_steps else f"{c.num_epochs} epoch(s)"
    )
    batch = shared("batch size", lambda c: f"batch {c.batch_size}")
    data = shared(
        "training file",
        lambda c: (
            Path(c.train_file).name
            + (f" (its first {c.max_train_samples:,} rows)" if c.max_train_samples else "")
        ),
    )
    max_length = shared("max length", lambda c: f"max length {c.max_seq_len}")
    precision = shared("precision", lambda c: f"precision {c.precision}")
    device = shared("device", lambda c: f"device {c.device}")
    return f"{model}, {length} of {batch} on {data}, {max_length}, {precision}, {device}, {seeds} seed(s)"


def run_experiment(
    grid: str | Path | Grid,
    out: str | Path | None = None,
    *,
    base: str | Path | dict[str, Any] | None = None,
    seeds: list[int] | None = None,
    overrides: dict[str, Any] | None = None,
    parallel: int = 1,
    launcher: str = "local",
    launcher_options: dict[str, Any] | None = None,
    plots: bool = True,
    echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    run: bool = True,
) -> ExperimentResult:
    """Run every cell of ``grid`` that has not finished in ``out`` (default ``runs/experiments/NAME``),
    then write results.md / .json / .csv and the plot there. ``base``: a config file, a recipe name or a mapping applied on
    top of the grid's base; ``overrides``: applied to every cell last (e.g. ``{"max_steps": 50}``).
    ``run=False`` trains nothing: the tables and plot of the cells finished so far (say, while the grid
    still runs elsewhere), each setting's n counting only those."""
    from simcse.core.safe_yaml import read_yaml
    from simcse.experiments.results import write_results
    from simcse.experiments.runner import run_cells
    from simcse.training.config.recipes import recipe_path

    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    out = Path(out) if out is not None else Path("runs/experiments") / grid.name
    base_values = (
        read_yaml(recipe_path(base)) if isinstance(base, (str, Path)) else base
    )  # a file or a recipe
    todo = cells(grid, out, base=base_values, seeds=seeds, overrides=overrides)
    if plots:
        from simcse.experiments.plots import pyplot

        pyplot()  # a missing matplotlib is said before the cells train, not after
    n_seeds = len(seeds or grid.seeds)
    budget = budget_of(todo, n_seeds)
    echo(
        f"simcse: experiment {grid.name}: {len(grid.settings)} settings x {n_seeds} seeds = {len(todo)} cells "
        f"in {out} ({budget})"
    )
    if run:
        check_data(todo)
        results = run_cells(
            grid,
            todo,
            out,
            parallel=parallel,
            launcher=launcher,
            launcher_options=launcher_options,
            echo=echo,
        )
    else:
        results = finished_cells(todo)
        if not results:
            from simcse.core.errors import SimCSEError

            raise SimCSEError(f"no cell of {grid.name} has finished in {out}; nothing to report")
        budget += f"; {len(results)} of {len(todo)} cells finished when this table was written"
        echo(f"simcse: report of the {len(results)} finished cells; nothing trained")
    rows = write_results(grid, results, out, budget)
    files = [out / "results.md", out / "results.json", out / "results.csv"]
    if plots:
        from simcse.experiments.plots import plot_settings

        files += plot_settings(grid, rows, out, budget)
        files += _geometry_plot(grid, todo, results, out)
    return ExperimentResult(grid, out, results, rows, files)


def check_data(todo: list[Cell]) -> None:
    """Every cell's training file and evaluation data, found (or fetched, as a run would) before the first
    cell starts: what is missing is one error that names the settings needing it, not one failure per cell."""
    from simcse.core.errors import SimCSEError
    from simcse.data.download import ensure_dataset
    from simcse.training.setup import resolve_train_file

    missing: dict[str, list[str]] = {}
    checked: dict[tuple, str | None] = {}
    for cell in todo:
        c = cell.config
        needs = [("train", c.train_file, c.data_dir, c.max_train_samples)]
        if (c.dev_eval and not c.dev_file) or c.final_eval != "none" or c.geometry_steps:
            needs.append(("senteval", c.data_dir))
        for need in needs:
            if need not in checked:
                try:
                    if need[0] == "senteval":
                        ensure_dataset("senteval", c.data_dir)
                        checked[need] = None
                    else:
                        path = resolve_train_file(c)
                        checked[need] = None if path.is_file() else f"{path}: training file not found"
                except SimCSEError as e:
                    checked[need] = str(e)
            if checked[need] is not None:
                names = missing.setdefault(checked[need], [])
                if cell.setting.name not in names:
                    names.append(cell.setting.name)
    if missing:
        raise SimCSEError(
            "; ".join(f"{problem} (needed by {', '.join(names)})" for problem, names in missing.items())
        )


def finished_cells(todo: list[Cell]) -> list[CellResult]:
    """The cells of ``todo`` that finished with their settings, as results (nothing runs)."""
    from simcse.experiments.runner import CellResult, cell_metrics, plan

    if not todo:
        return []
    done = {id(cell) for cell in plan(todo)["done"]}
    return [
        CellResult(c.setting.name, c.seed, str(c.out), "skipped", metrics=cell_metrics(c.out))
        for c in todo
        if id(c) in done
    ]


def _geometry_plot(grid: Grid, todo: list[Cell], results: list[CellResult], out: Path) -> list[Path]:
    """When the cells logged alignment and uniformity (``geometry_steps``): the paper's Figure 2, one curve
    per setting (its first seed that finished)."""
    from simcse.experiments.plots import plot_geometry, read_metrics

    finished = {(r.setting, r.seed) for r in results if r.status != "failed"}
    first: dict[str, Path] = {}
    for cell in todo:
        if (cell.setting.name, cell.seed) in finished and cell.config.geometry_steps:
            first.setdefault(cell.setting.name, cell.out)
    if not first or not any(r.get("kind") == "geometry" for r in read_metrics(next(iter(first.values())))):
        return []
    return plot_geometry(list(first.values()), out / f"{grid.name}-geometry", labels=list(first))
