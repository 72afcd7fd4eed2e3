"""Trainer parity (issue 12): the original SimCSE code and ours side by side at one setting, over seeds, with
variants of ours that remove one candidate difference each.

Setting: the embedded all-MiniLM-L6-v2, the paper's unsup recipe (``cls`` + ``mlp_only_train``, batch 64,
lr 3e-5, temperature 0.05, max length 32), 200 steps on the 11,914 Wikipedia sentences of the data
directory, STS-B dev every 100 steps, fp32 on the CPU; the score is the best STS-B dev Spearman of the two
evaluations.

Variants (``--variants``, comma-separated):
- ``original``: princeton-nlp/SimCSE's own ``train.py`` (needs ``--original-dir`` and ``--original-python``,
  see below); its score is the ``best_metric`` of its ``trainer_state.json``;
- ``default``: as ``simcse train`` runs it (since 2026-12-04 with the original Trainer's AdamW);
- ``adamw_hf``: the original Trainer's AdamW (epsilon before the bias correction), the default now;
- ``torch_adamw``: torch's AdamW, the default before 2026-12-04;
- ``plain_dropout``: torch's own dropout masks and the padded Hugging Face forward (``--fast_dropout false
  --packed off``);
- ``faithful``: ``adamw_hf`` and ``plain_dropout``;
- ``bf16``: ``--precision bf16``, what ``precision auto`` picks on a CPU with AMX or AVX512-BF16 (issue 17:
  STS-B dev within 0.3 of fp32).
Variants combine with ``+`` (later switches win): ``adamw_hf+bf16`` is the original's optimiser in bf16, about
half the time of an fp32 run on a CPU with AVX512-BF16.

The original code needs transformers 4.2.1, in its own environment. On this project's machine (Python 3.11,
where tokenizers 0.9.4, which transformers 4.2.1 pins, has no wheel)::

    python3 -m venv /tmp/orig-venv && /tmp/orig-venv/bin/pip install torch==2.13.0
    /tmp/orig-venv/bin/pip install --no-deps transformers==4.2.1
    /tmp/orig-venv/bin/pip install tokenizers==0.13.3 numpy filelock requests regex sacremoses tqdm \
        packaging datasets scipy scikit-learn pandas prettytable six protobuf "setuptools<70"
    # skip transformers 4.2.1's import-time check of the tokenizers version
    sed -i 's/^        if pkg == "tokenizers":/&\n            continue/' \
        /tmp/orig-venv/lib/python3.11/site-packages/transformers/dependency_versions_check.py

and a checkout of github.com/princeton-nlp/SimCSE as ``--original-dir``. Its model is the embedded one saved
as ``pytorch_model.bin`` in a directory whose name contains ``bert`` (its ``train.py`` picks the class by
name); it runs in a scratch directory whose ``SentEval/data/downstream`` links to the data directory's.

Each run is a fresh process; the variants alternate within each seed, so a slow phase of a shared machine
does not favour one. Prints mean ± std (n) per variant and the seconds per run.

    python benchmarks/parity.py [--seeds 42,1,2] [--variants original,default,plain_dropout] [--steps 200]
        [--original-dir SimCSE --original-python /tmp/orig-venv/bin/python]
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

# the original's numbers as the issue reported them (another environment than this project's machine)
REPORTED = {42: 85.09, 1: 85.01, 2: 84.91}
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


def original_model(directory: Path) -> Path:
    """The embedded model as the original's transformers 4.2.1 reads it: pytorch_model.bin, 'bert' in the path."""
    import torch
    from safetensors.torch import load_file

    from simcse.modeling.model_dir import embedded_model_path

    source, target = embedded_model_path(), directory / "minilm-bert"
    target.mkdir(parents=True)
    for name in (
        "config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ):
        (target / name).write_bytes((source / name).read_bytes())
    torch.save(load_file(str(source / "model.safetensors")), target / "pytorch_model.bin")
    return target


def run_original(
    code: Path, python: str, model: Path, seed: int, steps: int, out: Path, data_dir: str
) -> tuple[float, float]:
    work = out.parent / f"work-{seed}"
    (work / "SentEval" / "data").mkdir(parents=True, exist_ok=True)
    link = work / "SentEval" / "senteval"
    if not link.exists():
        link.symlink_to((code / "SentEval" / "senteval").resolve())
    downstream = work / "SentEval" / "data" / "downstream"
    if not downstream.exists():
        downstream.symlink_to((Path(data_dir) / "senteval" / "downstream").resolve())
    args = [python, str((code / "train.py").resolve()), "--model_name_or_path", str(model), "--train_file",
            str((Path(data_dir) / "wiki" / "wiki1m_for_simcse.head11914.txt").resolve()), "--output_dir", str(out),
            "--max_steps", str(steps), "--per_device_train_batch_size", "64", "--learning_rate", "3e-5",
            "--max_seq_length", "32", "--evaluation_strategy", "steps", "--metric_for_best_model", "stsb_spearman",
            "--load_best_model_at_end", "--eval_steps", "100", "--save_steps", "100000", "--pooler_type", "cls",
            "--mlp_only_train", "--overwrite_output_dir", "--temp", "0.05", "--do_train", "--seed", str(seed),
            "--no_cuda", "--disable_tqdm", "true"]  # fmt: skip
    start = time.perf_counter()
    # Its train.py then evaluates the transfer tasks (evaluation_strategy turns do_eval on): not needed here,
    # and longer than the training, so the run stops once the training results are written.
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=work)
    tail: list[str] = []
    for line in proc.stderr:
        tail = [*tail[-100:], line]
        if "*** Evaluate ***" in line:
            proc.terminate()
            break
    proc.wait()
    if not (out / "trainer_state.json").is_file():
        sys.exit(f"original seed {seed} failed:\n{''.join(tail)[-3000:]}")
    state = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))
    return 100 * float(state["best_metric"]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--variants", default="default,adamw_hf,plain_dropout")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR", "../shared/data"))
    parser.add_argument("--output", default=None, help="write every run as JSON")
    parser.add_argument("--original-dir", type=Path, default=None, help="a checkout of princeton-nlp/SimCSE")
    parser.add_argument(
        "--original-python", default=None, help="a Python with transformers 4.2.1 (see above)"
    )
    args = parser.parse_args()
    from simcse.core.hardware import describe_cpu

    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    unknown = sorted(
        {part for v in variants if v != "original" for part in v.split("+") if part not in VARIANTS}
    )
    if unknown:
        sys.exit(f"--variants: unknown {', '.join(unknown)}; choose from original, {', '.join(VARIANTS)} "
                 "(combine ours with +)")  # fmt: skip
    if "original" in variants and not (args.original_dir and args.original_python):
        sys.exit("--variants original needs --original-dir (a SimCSE checkout) and --original-python")
    if args.original_dir and not (args.original_dir / "train.py").is_file():
        sys.exit(
            f"--original-dir {args.original_dir}: no train.py there (expected a princeton-nlp/SimCSE checkout)"
        )
    results: dict[str, list[float]] = {v: [] for v in variants}
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    records = []
    with tempfile.TemporaryDirectory(prefix="simcse-parity-") as tmp:
        model = original_model(Path(tmp)) if "original" in variants else None
        for seed in seeds:
            for variant in variants:
                out = Path(tmp) / f"{variant}-{seed}"
                if variant == "original":
                    score, took = run_original(args.original_dir, args.original_python, model, seed, args.steps,
                                               out, args.data_dir)  # fmt: skip
                else:
                    score, took = run(variant, seed, args.steps, out, args.data_dir)
                results[variant].append(score)
                seconds[variant].append(took)
                records.append({"variant": variant, "seed": seed, "stsb_dev": score, "seconds": took})
                print(f"seed {seed} {variant}: STS-B dev {score:.2f} ({took:.0f} s)", flush=True)
    print(f"\nparity: all-MiniLM-L6-v2, unsup cls + mlp_only_train, batch 64, lr 3e-5, {args.steps} steps, "
          f"best of STS-B dev every 100 steps, fp32 (bf16 where named), {describe_cpu()}; seeds {seeds}")  # fmt: skip
    print("| trainer | STS-B dev, per seed | mean ± std (n) | s per run |\n|---|---|---|---|")
    reported = [REPORTED[s] for s in seeds if s in REPORTED]
    if reported:
        print(f"| original SimCSE (reported in the issue, another machine) | {' / '.join(f'{v:.2f}' for v in reported)} | "
              f"{np.mean(reported):.2f} ± {np.std(reported, ddof=1) if len(reported) > 1 else 0:.2f} "
              f"({len(reported)}) | |")  # fmt: skip
    for variant in variants:
        values = results[variant]
        std = np.std(values, ddof=1) if len(values) > 1 else 0.0
        print(f"| {'original SimCSE, run here' if variant == 'original' else 'simcse ' + variant} | {' / '.join(f'{v:.2f}' for v in values)} | {np.mean(values):.2f} ± "
              f"{std:.2f} ({len(values)}) | {np.mean(seconds[variant]):.0f} |")  # fmt: skip
    if args.output:
        Path(args.output).write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
