"""The 7 SentEval transfer tasks of one encoder under both classifiers: SentEval's own (the paper's protocol,
mean ± std over classifier seeds) and the deterministic L-BFGS fit, in the modes asked for.

The embeddings are computed once (``--cache-dir``) and shared by every run, so the table shows the
classifiers alone. Prints a markdown table and, with ``--output``, writes the raw results as JSON.

    python benchmarks/transfer_protocols.py [--model default] [--modes fasttest,test] [--seeds 1111,1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

TASKS = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="default: the embedded all-MiniLM-L6-v2")
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR", "../shared/data"))
    parser.add_argument("--modes", default="fasttest,test")
    parser.add_argument("--seeds", default="1111,1,2", help="SentEval classifier seeds")
    parser.add_argument("--classifiers", default="senteval,lbfgs")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    bad = [c for c in args.classifiers.split(",") if c not in ("senteval", "lbfgs")]
    bad += [m for m in args.modes.split(",") if m not in ("test", "dev", "fasttest")]
    if bad:
        parser.error(
            f"unknown --classifiers/--modes values {bad}; classifiers: senteval, lbfgs; modes: test, dev, fasttest"
        )

    from simcse.core.hardware import describe_cpu
    from simcse.evaluation import evaluate

    cache = args.cache_dir or tempfile.mkdtemp(prefix="simcse-transfer-")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, raw = [], []
    for mode in args.modes.split(","):
        for classifier in args.classifiers.split(","):
            runs = []
            for seed in seeds if classifier == "senteval" else seeds[:1]:
                start = time.perf_counter()
                result = evaluate(args.model, "transfer", mode=mode, data_dir=args.data_dir, cache_dir=cache,
                                  seed=seed, classifier=classifier)  # fmt: skip
                seconds = time.perf_counter() - start
                accs = {t: result["tasks"][t]["acc"] for t in TASKS}
                raw.append(
                    {"mode": mode, "classifier": classifier, "seed": seed, "seconds": seconds, "acc": accs}
                )
                runs.append(accs)
                print(f"{mode} {classifier} seed {seed}: avg {np.mean(list(accs.values())):.2f} ({seconds:.0f} s)",
                      flush=True)  # fmt: skip
            rows.append((mode, classifier, runs))

    print(
        f"\nall-MiniLM-L6-v2 transfer tasks (acc), {describe_cpu()}; senteval: mean ± std over seeds {seeds}"
    )
    print("| mode | classifier | n | " + " | ".join(TASKS) + " | Avg. |")
    print("|---|---|---|" + "---|" * (len(TASKS) + 1))
    for mode, classifier, runs in rows:
        cells = []
        for task in [*TASKS, "avg"]:
            values = [np.mean(list(r.values())) if task == "avg" else r[task] for r in runs]
            std = f" ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else ""
            cells.append(f"{np.mean(values):.2f}{std}")
        print(f"| {mode} | {classifier} | {len(runs)} | " + " | ".join(cells) + " |")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(raw, f, indent=2)


if __name__ == "__main__":
    main()
