"""Training time per 1,000 steps of each SimCSE variant relative to SimCSE, on this machine.

Every setting of the ``variants`` grid (or another grid) is built as its own run in this process (the
embedded model, the grid's base config: batch 64, max length 32) and timed over the same batches of the
wiki sample, in alternating rounds (setting 1, 2, ..., then again), so that a change in the machine's load
hits every setting alike; each round times ``--steps`` full training steps (batching, forward, loss,
backward, optimiser, the variant's step hooks) after one warm-up step. Prints seconds per 1,000 steps
(median over rounds), the ratio to the first setting, and the CPU.

    python benchmarks/variant_speed.py [--grid variants] [--steps 5] [--rounds 3] [--settings A,B] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def build(config, out: Path):
    from simcse.core.runtime import seed_everything
    from simcse.training.loop import start
    from simcse.training.run_dir import prepare_output_dir
    from simcse.training.setup import build_model, read_inputs, resolve

    config = config.override({"output_dir": str(out), "dev_eval": False, "final_eval": "none", "save_steps": 0,
                              "progress_bar": False, "logging_steps": 10**9})  # fmt: skip
    env = resolve(config)
    inputs = read_inputs(config, env.dist, False)
    seed_everything(config.seed)
    model, _ = build_model(config, inputs.views)
    prepare_output_dir(config, inputs.out, False, env.dist)
    model.to(env.device)
    if config.fast_dropout and env.device.type == "cpu":
        from simcse.modeling.dropout import use_fast_dropout

        for encoder in (model.encoder, model.second_encoder):
            if encoder is not None:
                use_fast_dropout(encoder.backbone)
    run = start(config, env, inputs, model)
    run.model.train()
    return run


def timed_steps(run, batches, steps: int) -> float:
    from simcse.training.loop import train_step

    start = time.perf_counter()
    for _ in range(steps):
        _, _, rows, batch = next(batches)
        train_step(run, batch)
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", default="variants")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR", "../shared/data"))
    parser.add_argument(
        "--settings",
        default=None,
        help="comma-separated setting names to time (default: all); the grid's first is always timed, as the "
        "reference of the ratios",
    )
    args = parser.parse_args(argv)
    os.environ["SIMCSE_DATA_DIR"] = str(Path(args.data_dir).resolve())

    from simcse.core.hardware import describe_cpu
    from simcse.experiments.grid import cells, load_grid
    from simcse.training.data import Prefetcher

    grid = load_grid(args.grid)
    first = {}
    for cell in cells(grid, Path(tempfile.mkdtemp()), seeds=[grid.seeds[0]]):
        first.setdefault(cell.setting.name, cell)
    if args.settings:
        wanted = [name.strip() for name in args.settings.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in first]
        if unknown:
            parser.error(f"--settings: {', '.join(unknown)} not in grid {grid.name} ({', '.join(first)})")
        reference = next(iter(first))
        first = {name: cell for name, cell in first.items() if name == reference or name in wanted}
    runs, streams = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, cell) in enumerate(first.items()):
            run = build(cell.config, Path(tmp) / str(i))
            runs[name] = run
            streams[name] = Prefetcher(run.inputs.plan.iterate(0, 0), run.inputs.data.rows, run.collate)
            timed_steps(run, streams[name], 1)  # warm-up
        times = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                times[name].append(timed_steps(run, streams[name], args.steps))
        for stream in streams.values():
            stream.close()
    base = statistics.median(next(iter(times.values())))
    print(f"# {grid.name}: seconds per 1,000 training steps, median of {args.rounds} alternating rounds of "
          f"{args.steps} steps; {describe_cpu()}")  # fmt: skip
    print(f"{'setting':40s} {'s / 1k steps':>13s} {'vs first':>9s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:40s} {1000 * median:13.0f} {median / base:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
