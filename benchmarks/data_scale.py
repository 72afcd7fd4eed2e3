"""A 1M-line training file (the size of the paper's wiki1m): time to the first training step and memory.

Builds a 1,000,000-line file by sampling the Wikipedia sentences of the data directory, then
1. reads it with ``read_training_file`` and reports the time and the memory the data side holds
   (tracemalloc: every Python allocation of the reader, the rows included);
2. runs ``simcse train --max_steps 1`` on it in a subprocess on the embedded model and reports the wall time
   from process start to the end of the first step (imports, model load, reading, batching, one step).

Writes the table to ``benchmarks/results/data_scale-<cpu class>.md`` (and ``.json``); a training run that fails
is reported in its row. The default run took 28 s on 2 AVX2-only cores.

    python benchmarks/data_scale.py [--lines 1000000] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR", "../shared/data"))
    args = parser.parse_args()
    if args.lines < 1:
        parser.error(f"--lines {args.lines}: give 1 or more")
    from bench_common import failure_line, print_cpu, wiki_sentences, write_results

    print_cpu()
    from simcse.data.sentence_files import read_training_file
    from simcse.training.data import BatchPlan

    sentences = wiki_sentences(args.data_dir)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wiki1m_like.txt"
        with path.open("w", encoding="utf-8") as f:
            for _ in range(args.lines):
                f.write(rng.choice(sentences) + "\n")
        size_mb = path.stat().st_size / 2**20

        tracemalloc.start()
        start = time.perf_counter()
        data = read_training_file(path)
        plan = BatchPlan(len(data), 64, seed=42)
        first = plan.batch(0, 0)
        read_s = time.perf_counter() - start
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del data, first

        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "simcse.cli", "train", "--train_file", str(path), "--output_dir", str(out),
               "--max_steps", "1", "--dev_eval", "false", "--final_eval", "none", "--save_steps", "0",
               "--progress_bar", "false", "--logging_steps", "1"]  # fmt: skip
        start = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            first_step_s = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["time"] - start
            step_cell = f"{first_step_s:.1f} s"
        else:  # reported in the table; the reading measures above still stand
            first_step_s = None
            step_cell = f"failed: {failure_line(proc)}"

    from simcse.core.hardware import describe_cpu

    lines = [
        f"{args.lines:,} lines sampled from the data directory's Wikipedia sentences, {size_mb:.0f} MB, "
        f"{describe_cpu()}",
        "",
        "| measure | value |",
        "|---|---|",
        f"| read + validate + first batch plan | {read_s:.1f} s |",
        f"| data-side memory held (peak during reading) | {held / 2**20:.0f} MB ({peak / 2**20:.0f} MB) |",
        f"| `simcse train` process start to end of first step | {step_cell} |",
    ]
    print("\n" + "\n".join(lines))
    data = {"lines": args.lines, "size_mb": size_mb, "read_s": read_s, "held_mb": held / 2**20,
            "peak_mb": peak / 2**20, "first_step_s": first_step_s}  # fmt: skip
    print(f"\nwritten: {write_results('data_scale', lines, data)}")


if __name__ == "__main__":
    main()
