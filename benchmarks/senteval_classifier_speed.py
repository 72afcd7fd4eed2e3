"""SentEval's transfer classifier: ours (every fold and penalty of a protocol side by side in one batched model)
beside a transcription of SentEval's own code (one classifier per fold and penalty, one after another, as
SentEval and SimCSE's ``evaluation.py`` run it: ``tests/evaluation/senteval_reference.py``).

The same problem on both sides: InnerKFold (the MR/CR/SUBJ/MPQA protocol) on ``--n`` rows of 384-dim
overlapping Gaussian classes (MR has 10,662 rows; CR 3,775), in SimCSE's ``fasttest`` and ``test`` settings,
one CPU thread (as the transfer evaluation runs it), seed 1111. Rounds alternate between the two sides; the
best round counts. Prints the seconds of each, the ratio, whether the two agree on the accuracies and
penalties, and the CPU.

    python benchmarks/senteval_classifier_speed.py [--n 2000] [--modes fasttest,test] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def problem(n: int, dim: int = 384, n_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % n_classes
    return (0.1 * rng.normal(size=(n_classes, dim))[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--modes", default="fasttest,test")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from simcse.core.hardware import describe_cpu
    from simcse.evaluation import senteval_classifier as sc
    from tests.evaluation.senteval_reference import senteval_inner_kfold

    bad = [m for m in args.modes.split(",") if m not in sc.SETTINGS]
    if bad:
        parser.error(f"--modes: unknown {', '.join(bad)}; choose from {', '.join(sc.SETTINGS)}")
    if args.n < 100 or args.rounds < 1:
        parser.error(f"--n must be >= 100 (got {args.n}) and --rounds >= 1 (got {args.rounds})")
    torch.set_num_threads(1)
    x, y = problem(args.n)
    print(f"SentEval InnerKFold classifier, {args.n} x 384, 2 classes, 1 thread, {describe_cpu()}")
    print(
        "| mode | SentEval (transcription), s | simcse, s | speed-up | same accuracies |\n|---|---|---|---|---|"
    )
    for mode in args.modes.split(","):
        settings, params = sc.SETTINGS[mode], {
            "optim": sc.SETTINGS[mode].optim, "batch_size": sc.SETTINGS[mode].batch_size,
            "tenacity": sc.SETTINGS[mode].tenacity, "epoch_size": sc.SETTINGS[mode].epoch_size,
        }  # fmt: skip
        times: dict[str, list[float]] = {"senteval": [], "simcse": []}
        results = {}
        for _ in range(args.rounds):
            start = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                results["senteval"] = senteval_inner_kfold(x, y, 2, params, settings.kfold, seed=1111)
            times["senteval"].append(time.perf_counter() - start)
            start = time.perf_counter()
            ours = sc.inner_kfold_protocol(x, y, 2, settings, 1111, torch.device("cpu"))
            times["simcse"].append(time.perf_counter() - start)
            results["simcse"] = (ours["devacc"], ours["acc"])
        theirs, mine = min(times["senteval"]), min(times["simcse"])
        same = tuple(map(float, results["senteval"])) == tuple(map(float, results["simcse"]))
        print(f"| {mode} | {theirs:.1f} | {mine:.1f} | {theirs / mine:.1f}x | {'yes' if same else 'NO'} "
              f"(dev/test {results['simcse'][0]:.2f} / {results['simcse'][1]:.2f}) |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
