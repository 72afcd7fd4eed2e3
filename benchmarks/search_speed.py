"""Vector search: latency, recall, build time and memory of the index backends (simcse.use.index.VectorIndex).

For each collection size (default 100k and 1M vectors of dim 384, float32, unit norm) and each backend:

- ``numpy``: exact NumPy search (the fallback without faiss);
- ``flat``: faiss exact inner product (``IndexFlatIP``);
- ``ivf``: faiss ``IndexIVFFlat`` (trained on the first 100k-vector chunk added; nprobe 16);
- ``hnsw``: faiss ``IndexHNSWFlat`` (M 32, efConstruction 80, efSearch 128).

Reported: build time (vectors added in 100k chunks), resident memory growth of the build (RSS delta; the
vectors themselves are allocated before it, so NumPy, which keeps references to them, shows ~0 and faiss
shows its own copy, ~raw size), search latency p50/p99 for one query at a time and for batches of 32, and
recall@10 of the approximate indexes against exact search. Each backend runs in a fresh process (spawned)
so memory numbers do not mix.

``--data random`` (default): database and queries are independent random unit vectors, the hardest case for
approximate search (no structure: the 10 nearest are barely nearer than the rest). ``--data clustered``:
vectors around 1,000 centres and queries near database vectors, closer to real sentence embeddings.

HNSW rows over 200,000 vectors are skipped by default with the reason (``--all-rows`` runs them): HNSW's build
grows faster than linearly, 87 s for 100k vectors on 2 AVX2-only cores, and its 1M build had not finished after
18 minutes there. The default run (100k: every backend; 1M: numpy, flat, ivf) took 8 min 56 s there, most of
it the exact searches over 1M vectors; it writes ``benchmarks/results/search_speed-<cpu class>.md``.

    python benchmarks/search_speed.py                      # 100k and 1M (HNSW at 100k only)
    python benchmarks/search_speed.py --all-rows           # HNSW at 1M too (tens of minutes on few cores)
    python benchmarks/search_speed.py --quick              # 20k vectors, few queries: a smoke run
    python benchmarks/search_speed.py --sizes 100000 --backends flat,hnsw --data clustered
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

import numpy as np

BACKENDS = ("numpy", "flat", "ivf", "hnsw")
HNSW_DEFAULT_MAX = 200_000  # vectors: a larger HNSW build runs only with --all-rows
CHUNK = 100_000


def make_vectors(n: int, dim: int, data: str, seed: int) -> np.ndarray:
    """n unit vectors, generated chunk by chunk into one preallocated array (no temporary full copies)."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, dim), dtype=np.float32)
    centres = rng.standard_normal((1000, dim), dtype=np.float32) if data == "clustered" else None
    for start in range(0, n, CHUNK):
        block = x[start : start + CHUNK]
        rng.standard_normal(out=block, dtype=np.float32)
        if centres is not None:
            block *= 0.5
            block += centres[rng.integers(0, len(centres), len(block))]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return x


def make_queries(x: np.ndarray, count: int, data: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    if data == "clustered":
        q = x[rng.choice(len(x), count, replace=False)] + 0.2 * rng.standard_normal(
            (count, x.shape[1]), dtype=np.float32
        )
    else:
        q = rng.standard_normal((count, x.shape[1]), dtype=np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_top10(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    best_s = np.full((len(q), 10), -np.inf, np.float32)
    best_i = np.zeros((len(q), 10), np.int64)
    for start in range(0, len(x), CHUNK):
        s = q @ x[start : start + CHUNK].T
        top = np.argpartition(-s, 9, axis=1)[:, :10]
        ms = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        mi = np.concatenate([best_i, top + start], axis=1)
        order = np.argsort(-ms, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(ms, order, axis=1), np.take_along_axis(mi, order, axis=1)
    return best_i


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def percentiles(times: list[float]) -> tuple[float, float]:
    ms = np.asarray(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def run_backend(
    backend: str, n: int, dim: int, data: str, n_single: int, n_batches: int, threads: int, queue
) -> None:
    """One backend, one size, in its own process; puts a result dict on ``queue``."""
    from simcse.use.index import VectorIndex

    if threads:
        import faiss

        faiss.omp_set_num_threads(threads)

    x = make_vectors(n, dim, data, seed=0)
    q_single = make_queries(x, n_single, data, seed=0)
    q_batch = make_queries(x, 32 * n_batches, data, seed=1)
    truth = exact_top10(x, q_single)
    kind = "flat" if backend == "numpy" else backend
    before = rss()
    t0 = time.perf_counter()
    index = VectorIndex(dim, kind, use_faiss=backend != "numpy")
    for start in range(0, n, CHUNK):
        index.add(x[start : start + CHUNK])
    build_s = time.perf_counter() - t0
    grown = rss() - before

    index.search(q_single[:2], 10)  # warm-up
    single, found = [], []
    for i in range(n_single):
        t = time.perf_counter()
        _, ids = index.search(q_single[i : i + 1], 10)
        single.append(time.perf_counter() - t)
        found.append(ids[0])
    batch = []
    for b in range(n_batches):
        t = time.perf_counter()
        index.search(q_batch[32 * b : 32 * (b + 1)], 10)
        batch.append(time.perf_counter() - t)
    recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
    queue.put({
        "size": n, "backend": backend, "kind": index.resolved_kind, "build_s": build_s,
        "raw_mb": x.nbytes / 1e6, "rss_delta_mb": grown / 1e6,
        "single_p50_ms": percentiles(single)[0], "single_p99_ms": percentiles(single)[1],
        "batch32_p50_ms": percentiles(batch)[0], "batch32_p99_ms": percentiles(batch)[1],
        "recall_at_10": recall,
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated collection sizes")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--data", choices=("random", "clustered"), default="random")
    parser.add_argument("--queries", type=int, default=300, help="single queries timed (and used for recall)")
    parser.add_argument("--batches", type=int, default=50, help="batches of 32 queries timed")
    parser.add_argument("--quick", action="store_true", help="20k vectors, 50 queries, 10 batches")
    parser.add_argument(
        "--faiss-threads", type=int, default=0, help="OpenMP threads for faiss (0: its default)"
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--all-rows", action="store_true", help=f"also HNSW over {HNSW_DEFAULT_MAX:,} vectors"
    )
    args = parser.parse_args()
    from bench_common import print_cpu, write_results

    print_cpu()
    if args.quick:
        args.sizes, args.queries, args.batches = "20000", 50, 10
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give comma-separated integers")
    for name in ("dim", "queries", "batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: give 1 or more")
    if any(n < 10 for n in sizes):
        parser.error(f"--sizes {args.sizes!r}: every size needs 10 vectors or more (recall@10)")
    backends = [b.strip() for b in args.backends.split(",")]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {', '.join(BACKENDS)}")

    import faiss

    from simcse.core.hardware import describe_cpu

    head = (f"dim {args.dim}, data {args.data}, faiss {faiss.__version__}, {describe_cpu()}, "
            f"{args.queries} single queries, {args.batches} batches of 32; each backend in a fresh process")  # fmt: skip
    print(head)
    header = (f"{'size':>9} {'backend':>7} {'build s':>8} {'raw MB':>7} {'RSS+ MB':>8} {'1q p50':>8} "
              f"{'1q p99':>8} {'32q p50':>8} {'32q p99':>8} {'recall@10':>9}")  # fmt: skip
    print(header + "   (latencies in ms)")
    ctx = mp.get_context("spawn")
    results = []
    table = ["| size | backend | build s | raw MB | RSS+ MB | 1q p50 ms | 1q p99 ms | 32q p50 ms | 32q p99 ms "
             "| recall@10 |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip

    def not_measured(n: int, backend: str, key: str, why: str) -> None:  # a row skipped or failed, said so
        results.append({"size": n, "backend": backend, key: why})
        table.append(f"| {n} | {backend} | {why} | | | | | | | |")
        print(f"{n:>9} {backend:>7} {why}", flush=True)

    for n in sizes:
        for backend in backends:
            if backend == "hnsw" and n > HNSW_DEFAULT_MAX and not args.all_rows:
                why = (f"skipped: HNSW's build grows faster than linearly, {n:,} vectors take tens of minutes "
                       "on a few cores (--all-rows runs it)")  # fmt: skip
                not_measured(n, backend, "skipped", why)
                continue
            queue = ctx.Queue()
            proc = ctx.Process(target=run_backend, args=(backend, n, args.dim, args.data, args.queries, args.batches, args.faiss_threads, queue))  # fmt: skip
            proc.start()
            while True:  # a child that dies (out of memory...) must not hang the run
                try:
                    r = queue.get(timeout=5)
                    break
                except Exception:
                    if not proc.is_alive():
                        r = None
                        break
            proc.join()
            if r is None:  # reported as a row; the other backends still run
                why = f"failed: the worker died (exit code {proc.exitcode})"
                not_measured(n, backend, "failed", why)
                continue
            results.append(r)
            table.append(f"| {n} | {backend} | {r['build_s']:.2f} | {r['raw_mb']:.0f} | {r['rss_delta_mb']:.0f} "
                         f"| {r['single_p50_ms']:.2f} | {r['single_p99_ms']:.2f} | {r['batch32_p50_ms']:.2f} "
                         f"| {r['batch32_p99_ms']:.2f} | {r['recall_at_10']:.3f} |")  # fmt: skip
            print(f"{n:>9} {backend:>7} {r['build_s']:>8.2f} {r['raw_mb']:>7.0f} {r['rss_delta_mb']:>8.0f} "
                  f"{r['single_p50_ms']:>8.2f} {r['single_p99_ms']:>8.2f} {r['batch32_p50_ms']:>8.2f} "
                  f"{r['batch32_p99_ms']:>8.2f} {r['recall_at_10']:>9.3f}", flush=True)  # fmt: skip
    print(
        f"\nwritten: {write_results('search_speed', [head, '', *table], {'args': vars(args), 'results': results})}"
    )
    if args.json:
        with open(args.json + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
