"""``simcse experiment NAME|GRID.yaml [--base CONFIG] [--seeds 1,2,3] [--max_steps N] [--output DIR]
[--parallel K]``: a grid of training runs over seeds, its table and its plot."""

from __future__ import annotations

import argparse
import sys

from simcse.cli.options import positive_int


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}")
    return seeds


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse experiment`` and its options to ``sub``."""
    from simcse.experiments.grid import builtin_grids

    p = sub.add_parser(
        "experiment",
        help="run a grid of training runs over seeds (the paper's analyses) and write its table and plot",
        description="Each cell is a normal simcse train run in DIR/SETTING/seedN. Re-running skips finished "
        "cells and resumes interrupted ones. Built-in grids: " + ", ".join(builtin_grids()),
    )
    p.add_argument("grid", metavar="NAME|GRID.yaml", help="a built-in grid or a grid file")
    p.add_argument(
        "--base", default=None, help="a config file or recipe name applied on top of the grid's base"
    )
    p.add_argument("--seeds", type=_seeds, default=None, help="comma-separated seeds (default: the grid's)")
    p.add_argument("--max_steps", "--max-steps", type=positive_int, default=None, help="steps per cell")
    p.add_argument(
        "--set",
        dest="sets",
        type=_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any training option for every cell, e.g. --set final_eval=sts (repeatable)",
    )
    p.add_argument(
        "--output",
        "--out",
        dest="out",
        default=None,
        help="where the cells and results go (default runs/experiments/NAME)",
    )
    p.add_argument(
        "--parallel", type=positive_int, default=1, help="cells at a time (one GPU each when present)"
    )
    p.add_argument(
        "--launcher",
        choices=("local", "submitit"),
        default="local",
        help="local: the cells as processes here | submitit: Slurm jobs (default: %(default)s)",
    )
    p.add_argument(
        "--launcher-option",
        dest="launcher_options",
        type=_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="submitit parameters, e.g. cluster=slurm, slurm_partition=gpu, gpus_per_node=1, timeout_min=600",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG/SVG plot")
    p.add_argument("--dry-run", action="store_true", help="list the cells and what would run; run nothing")
    p.add_argument(
        "--report",
        action="store_true",
        help="train nothing: the tables and plot of the cells finished so far",
    )
    p.add_argument(
        "--step-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --dry-run: the grid's projected time at this measured time per training step",
    )
    p.set_defaults(func=run)


def _launcher_values(pairs: list[tuple[str, str]]) -> dict[str, object]:
    values: dict[str, object] = {}
    for key, value in pairs:
        values[key] = int(value) if value.lstrip("-").isdigit() else value
    return values


def run(args: argparse.Namespace) -> int:
    """Run a grid (or with ``--dry-run`` list its cells and their state, and the projected time with
    ``--step-time``); prints the results table; 1 when a cell failed."""
    from pathlib import Path

    from simcse.core.errors import SimCSEError
    from simcse.core.safe_yaml import read_yaml
    from simcse.experiments import run_experiment
    from simcse.experiments.grid import cells, load_grid
    from simcse.experiments.runner import plan
    from simcse.training.config import parse_flags
    from simcse.training.config.recipes import recipe_path

    overrides = parse_flags([item for key, value in args.sets for item in (f"--{key}", value)])
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    if args.step_time is not None and not (args.step_time > 0 and args.dry_run):
        raise SimCSEError(
            f"--step-time {args.step_time:g}: give a positive number of seconds, with --dry-run"
        )
    grid = load_grid(args.grid)
    if args.dry_run:
        out = Path(args.out) if args.out else Path("runs/experiments") / grid.name
        base = read_yaml(recipe_path(args.base)) if args.base else None
        states = plan(cells(grid, out, base=base, seeds=args.seeds, overrides=overrides))
        for state, listed in states.items():
            for cell in listed:
                print(f"{state:6} {cell.label}: {cell.out}")
        if args.step_time is not None:
            from simcse.experiments.projection import projection_lines

            print(
                "\n".join(projection_lines([c for listed in states.values() for c in listed], args.step_time))
            )
        return 0
    result = run_experiment(
        grid,
        args.out,
        base=recipe_path(args.base) if args.base else None,
        seeds=args.seeds,
        overrides=overrides,
        parallel=args.parallel,
        launcher=args.launcher,
        launcher_options=_launcher_values(args.launcher_options),
        plots=not args.no_plots,
        run=not args.report,
    )
    print((result.out / "results.md").read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in result.files), file=sys.stderr)
    if result.failed:
        for cell in result.failed:
            print(f"simcse: {cell.setting} seed {cell.seed} failed: {cell.error}", file=sys.stderr)
        print(
            f"simcse: error: {len(result.failed)} of {len(result.cells)} cells failed (logs named above); "
            "re-run the same command to retry them",
            file=sys.stderr,
        )
        return 1
    return 0
