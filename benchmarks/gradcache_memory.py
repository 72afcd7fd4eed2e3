"""Peak memory of one batch-512 unsup step: plain vs GradCache chunks (all-MiniLM-L6-v2, CPU, fp32).

GradCache keeps the 512-sentence batch of negatives while holding activations for one chunk at a time, so
a batch that does not fit in memory at once trains in chunks. Each configuration runs 2 steps in its own
process; the script prints peak RSS and seconds per step and writes the table to
``benchmarks/results/gradcache_memory-<cpu class>.md`` (and ``.json``); a configuration that fails is reported
in its row and the others still run. The default run (3 configurations) took 3 min 27 s on 2 AVX2-only cores.

    python benchmarks/gradcache_memory.py [--batch 512] [--chunks 0,128,32] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from pathlib import Path


def child(batch: int, chunk: int, data_dir: str) -> None:
    from bench_common import wiki_sentences

    from simcse.training.config import TrainConfig
    from simcse.training.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("\n".join(wiki_sentences(data_dir)) + "\n", encoding="utf-8")
        config = TrainConfig(
            train_file=str(train_file), output_dir=tmp + "/o",
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
    if args.batch < 1:
        parser.error(f"--batch {args.batch}: give 1 or more")
    try:
        chunks = [int(c) for c in args.chunks.split(",")]
    except ValueError:
        parser.error(f"--chunks {args.chunks!r}: give comma-separated integers (0 = the whole batch)")
    if any(c < 0 for c in chunks):
        parser.error(f"--chunks {args.chunks!r}: a chunk is 0 (the whole batch) or more")
    from bench_common import print_cpu, run_child, wiki_sentences, write_results

    wiki_sentences(args.data_dir)  # absent: one line naming the fetch command, before any child starts

    from simcse.core.hardware import describe_cpu

    print_cpu()
    head = f"unsup, all-MiniLM-L6-v2, batch {args.batch}, max length 32, fp32, 2 steps each, {describe_cpu()}"
    print("\n" + head, flush=True)
    lines = ["| chunk | peak RSS (MB) | seconds per step |", "|---|---|---|"]
    print("\n".join(lines), flush=True)
    rows = []
    for chunk in chunks:
        cmd = [sys.executable, __file__, "--child", str(args.batch), str(chunk), "--data-dir", args.data_dir]
        r = run_child(cmd)
        rows.append({"chunk": chunk, **r})
        label = "whole batch" if chunk == 0 else str(chunk)
        if "failed" in r:  # reported as a row; the other chunks still run
            lines.append(f"| {label} | failed: {r['failed']} | |")
        else:
            lines.append(f"| {label} | {r['peak_rss_mb']:.0f} | {r['second_step_s']:.1f} |")
        print(lines[-1], flush=True)
    path = write_results("gradcache_memory", [head, "", *lines], {"batch": args.batch, "rows": rows})
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
