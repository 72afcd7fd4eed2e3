"""``simcse plot geometry RUN... | curves RUN... [--output FILE] [--labels A,B]``: figures from runs' metrics."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse plot geometry`` / ``simcse plot curves`` and their options to ``sub``."""
    p = sub.add_parser("plot", help="figures from training runs' metrics.jsonl (PNG and SVG)")
    kinds = p.add_subparsers(dest="plot_command", required=True)
    for name, text in (
        (
            "geometry",
            "uniformity vs alignment on STS-B dev, arrows in step order (train with --geometry_steps N)",
        ),
        ("curves", "training loss and the dev score over steps"),
    ):
        q = kinds.add_parser(name, help=text, description=text)
        q.add_argument("runs", nargs="+", metavar="RUN", help="run directories (or their metrics.jsonl)")
        q.add_argument(
            "--output",
            "--out",
            dest="out",
            default=f"{name}.png",
            help="the figure (a .png and a .svg are written; default: %(default)s)",
        )
        q.add_argument(
            "--labels", default=None, help="comma-separated names for the runs (default: directory names)"
        )
        q.set_defaults(func=run, kind=name)


def run(args: argparse.Namespace) -> int:
    """Draw the figure of the runs' ``metrics.jsonl`` and print the files written."""
    from pathlib import Path

    from simcse.core.errors import SimCSEError
    from simcse.experiments.plots import plot_curves, plot_geometry

    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    if labels is not None and len(labels) != len(args.runs):
        raise SimCSEError(f"--labels names {len(labels)} runs, {len(args.runs)} were given")
    draw = plot_geometry if args.kind == "geometry" else plot_curves
    paths = draw([Path(r) for r in args.runs], Path(args.out), labels)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
