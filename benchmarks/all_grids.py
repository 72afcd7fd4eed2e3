"""Every built-in grid of ``simcse experiment``, end to end at a small budget on this machine: the embedded
all-MiniLM-L6-v2, the data directory, a few dozen steps, 3 seeds (the paper-analyses issue's check that each
grid runs; the numbers at this budget say little about the paper's).

Each grid is an ordinary :func:`simcse.experiments.run_experiment` into ``OUT/NAME`` (re-running skips the
finished cells and resumes interrupted ones), then one summary line per grid: cells done / failed, the wall
time, and the best setting. Exit 1 when a cell failed.

    python benchmarks/all_grids.py [--grids dropout,objective] [--steps 20] [--seeds 1,2,3] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from simcse.experiments import builtin_grids, run_experiment  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grids", default=",".join(builtin_grids()), help="comma-separated (default: all)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per cell (default 20)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--out", default="runs/experiments/all-grids")
    args = parser.parse_args(argv)
    names = [g.strip() for g in args.grids.split(",") if g.strip()]
    unknown = sorted(set(names) - set(builtin_grids()))
    if unknown:
        parser.error(f"--grids: unknown grid(s) {', '.join(unknown)}; built in: {', '.join(builtin_grids())}")
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = {"max_steps": args.steps, "eval_steps": args.steps, "save_steps": args.steps}
    lines, failed = [], 0
    for name in names:
        start = time.perf_counter()
        result = run_experiment(name, Path(args.out) / name, seeds=seeds, overrides=overrides)
        metric = result.grid.metric
        scored = [(r["metrics"][metric]["mean"], r["setting"]) for r in result.rows if metric in r["metrics"]]
        best = max(scored) if scored else None
        failed += len(result.failed)
        lines.append(f"{name}: {len(result.cells) - len(result.failed)}/{len(result.cells)} cells done, "
                     f"{time.perf_counter() - start:.0f} s"
                     + (f", best {best[1]} ({best[0]:.2f})" if best else ""))  # fmt: skip
    print(f"{args.steps} steps a cell, seeds {args.seeds}:")
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
