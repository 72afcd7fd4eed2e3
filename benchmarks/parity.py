"""Trainer parity (issue 12): the setting in which the original SimCSE code was run side by side with ours,
repeated over seeds for our trainer and for variants that remove one candidate difference each.

Setting: the embedded all-MiniLM-L6-v2, the paper's unsup recipe (``cls`` + ``mlp_only_train``, batch 64,
lr 3e-5, temperature 0.05, max length 32), 200 steps on the 11,914 Wikipedia sentences of the data
directory, STS-B dev every 100 steps, fp32 on the CPU; the score is the best STS-B dev Spearman of the two
evaluations. The original code reached 85.09 / 85.01 / 84.91 (seeds 42 / 1 / 2; mean 85.00), as reported
in the issue (it cannot run here: it needs transformers 4.2).

Variants (``--variants``, comma-separated):
- ``default``: as ``simcse train`` runs it (since 2026-12-04 with the original Trainer's AdamW);
- ``adamw_hf``: the original Trainer's AdamW (epsilon before the bias correction), the default now;
- ``torch_adamw``: torch's AdamW, the default before 2026-12-04;
- ``plain_dropout``: torch's own dropout masks and the padded Hugging Face forward (``--fast_dropout false
  --packed off``);
- ``faithful``: both of the above;
- ``bf16``: ``--precision bf16``, what ``precision auto`` picks on a CPU with AMX or AVX512-BF16 (issue 17:
  STS-B dev within 0.3 of fp32).
Variants combine with ``+`` (later switches win): ``adamw_hf+bf16`` is the original's optimiser in bf16, about
half the time of an fp32 run on a CPU with AVX512-BF16.

Each run is a fresh ``simcse train`` process; the variants alternate within each seed, so a slow phase of a
shared machine does not favour one. Prints mean ± std (n) per variant and the seconds per run.

    python benchmarks/parity.py [--seeds 42,1,2] [--variants default,adamw_hf,plain_dropout] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ORIGINAL = {42: 85.09, 1: 85.01, 2: 84.91}
VARIANTS = {
    "default": [],
    "adamw_hf": ["--optimizer", "adamw_hf"],
    "torch_adamw": ["--optimizer", "adamw"],
    "plain_dropout": ["--fast_dropout", "false", "--packed", "off"],
    "faithful": ["--optimizer", "adamw_hf", "--fast_dropout", "false", "--packed", "off"],
    # what precision auto picks on a CPU with AMX or AVX512-BF16 (bf16 autocast; the dev evaluation in bf16 weights)
    "bf16": ["--precision", "bf16"],
}


def switches(variant: str) -> list[str]:
    return [arg for part in variant.split("+") for arg in VARIANTS[part]]


def run(variant: str, seed: int, steps: int, out: Path, data_dir: str) -> tuple[float, float]:
    args = [sys.executable, "-m", "simcse.cli", "train", "--train_file", "wiki/wiki1m_for_simcse.head11914.txt",
            "--objective", "unsup", "--pooler", "cls", "--mlp_only_train", "true", "--batch_size", "64",
            "--learning_rate", "3e-5", "--temperature", "0.05", "--max_seq_len", "32", "--max_steps", str(steps),
            "--eval_steps", "100", "--save_steps", "0", "--metric_for_best_model", "stsb_spearman",
            "--eval_before_training", "false", "--final_eval", "none", "--precision", "fp32", "--device", "cpu",
            "--seed", str(seed), "--output_dir", str(out), "--data_dir", data_dir, "--progress_bar", "false",
            "--tensorboard", "false", *switches(variant)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{variant} seed {seed} failed:\n{proc.stderr[-3000:]}")
    meta = json.loads((out / "simcse.json").read_text(encoding="utf-8"))
    return float(meta["dev"]["stsb_spearman"]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--variants", default="default,adamw_hf,plain_dropout")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR", "../shared/data"))
    parser.add_argument("--output", default=None, help="write every run as JSON")
    args = parser.parse_args()
    from simcse.hardware import describe_cpu

    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    unknown = sorted({part for v in variants for part in v.split("+") if part not in VARIANTS})
    if unknown:
        sys.exit(
            f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)} (combine with +)"
        )
    results: dict[str, list[float]] = {v: [] for v in variants}
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    records = []
    with tempfile.TemporaryDirectory(prefix="simcse-parity-") as tmp:
        for seed in seeds:
            for variant in variants:
                score, took = run(variant, seed, args.steps, Path(tmp) / f"{variant}-{seed}", args.data_dir)
                results[variant].append(score)
                seconds[variant].append(took)
                records.append({"variant": variant, "seed": seed, "stsb_dev": score, "seconds": took})
                print(f"seed {seed} {variant}: STS-B dev {score:.2f} ({took:.0f} s)", flush=True)
    print(f"\nparity: all-MiniLM-L6-v2, unsup cls + mlp_only_train, batch 64, lr 3e-5, {args.steps} steps, "
          f"best of STS-B dev every 100 steps, fp32 (bf16 where named), {describe_cpu()}; seeds {seeds}")  # fmt: skip
    print("| trainer | STS-B dev, per seed | mean ± std (n) | s per run |\n|---|---|---|---|")
    original = [ORIGINAL[s] for s in seeds if s in ORIGINAL]
    if original:
        print(f"| original SimCSE (reported) | {' / '.join(f'{v:.2f}' for v in original)} | "
              f"{np.mean(original):.2f} ± {np.std(original, ddof=1) if len(original) > 1 else 0:.2f} "
              f"({len(original)}) | |")  # fmt: skip
    for variant in variants:
        values = results[variant]
        std = np.std(values, ddof=1) if len(values) > 1 else 0.0
        print(f"| simcse {variant} | {' / '.join(f'{v:.2f}' for v in values)} | {np.mean(values):.2f} ± "
              f"{std:.2f} ({len(values)}) | {np.mean(seconds[variant]):.0f} |")  # fmt: skip
    if args.output:
        Path(args.output).write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
