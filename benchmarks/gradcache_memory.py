"""Peak memory of one batch-512 unsup step: plain vs GradCache chunks (all-MiniLM-L6-v2, CPU, fp32).

GradCache keeps the 512-sentence batch of negatives while holding activations for one chunk at a time, so
a batch that does not fit in memory at once trains in chunks. Each configuration runs 2 steps in its own
process; the script prints peak RSS and seconds per step.

    python benchmarks/gradcache_memory.py [--batch 512] [--chunks 0,128,32] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def child(batch: int, chunk: int, data_dir: str) -> None:
    from simcse.training.config import TrainConfig
    from simcse.training.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            train_file=str(Path(data_dir) / "wiki" / "wiki1m_for_simcse.head11914.txt"), output_dir=tmp + "/o",
            mlp_only_train=True, batch_size=batch, gradcache_chunk_size=chunk, max_steps=2, dev_eval=False,
            final_eval="none", save_steps=0, progress_bar=False, tensorboard=False, logging_steps=1,
        )  # fmt: skip
        train(config)
        times = [
            json.loads(line)["time"] for line in Path(tmp, "o", "metrics.jsonl").read_text().splitlines()
        ]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"peak_rss_mb": peak, "second_step_s": times[1] - times[0]}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--chunks", default="0,128,32", help="0 = the whole batch in one pass")
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR", "../shared/data"))
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.data_dir)
    from bench_common import print_cpu

    from simcse.core.hardware import describe_cpu

    print_cpu()

    print(f"\nunsup, all-MiniLM-L6-v2, batch {args.batch}, max length 32, fp32, {describe_cpu()}")
    print("| chunk | peak RSS (MB) | seconds per step |\n|---|---|---|")
    for chunk in (int(c) for c in args.chunks.split(",")):
        cmd = [sys.executable, __file__, "--child", str(args.batch), str(chunk), "--data-dir", args.data_dir]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.exit(proc.stderr[-3000:])
        r = json.loads(lines[-1][7:])
        label = "whole batch" if chunk == 0 else str(chunk)
        print(f"| {label} | {r['peak_rss_mb']:.0f} | {r['second_step_s']:.1f} |")


if __name__ == "__main__":
    main()
