"""Load test of ``simcse serve``: a real server in a subprocess on loopback, many concurrent HTTP clients.

Embeddings mode (default; issue 4): ``--clients`` concurrent clients send ``--requests`` POST /v1/embeddings
requests (1..``--max-texts`` sentences each). Prints errors (must be 0), throughput (requests/s, texts/s)
and p50/p99 latency.

Mixed mode (``--mixed``; issue 6): ``--clients`` clients for ``--duration`` seconds over /v1/embeddings,
/similarity, /search and /health, with ``--malformed`` (5%) deliberately bad requests (invalid JSON, wrong
types, too many texts, too long a text, unknown field or route, wrong method or content type). Each
malformed request must get its own 4xx; every other request must get 200. Prints requests served, errors
by kind, p50/p99 latency and the server's peak RSS (psutil, sampled every 50 ms).

Exits 1 when any request failed (unexpected status, a 5xx, a transport error or a wrong response shape).
Writes the table to ``benchmarks/results/serve_load-<cpu class>.md`` (``serve_load_mixed-`` for ``--mixed``).
On 2 AVX2-only cores the default run took 62 s and ``--mixed --duration 60`` 88 s.

    python benchmarks/serve_load.py [--model DIR] [--requests 2000] [--clients 50]
    python benchmarks/serve_load.py --mixed [--duration 60] [--clients 50]
    python benchmarks/serve_load.py --requests 200 --clients 10        # quick check

``--precision fp32,auto`` (default) runs the load once per precision, the server started with that
``--precision``: fp32 beside what ``auto`` picks on this CPU (bf16 weights with AMX or AVX512-BF16), and prints
both rates side by side (where ``auto`` is fp32, as on CPUs without bf16 units, one run: the same server twice
measures nothing); ``--backend onnx|openvino`` serves an export directory (``--model``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUBJECTS = ["a man", "a woman", "two children", "the old dog", "a group of people", "a young girl", "the chef",
            "a cyclist", "three students", "the pilot", "a small cat", "the team"]  # fmt: skip
VERBS = ["is playing", "is riding", "is cooking", "is reading", "is watching", "is carrying", "is painting",
         "is cleaning", "is selling", "is repairing", "is throwing", "is buying"]  # fmt: skip
OBJECTS = ["a guitar", "a horse", "some pasta", "a long book", "the evening news", "a heavy box",
           "a red wall", "the kitchen floor", "fresh fruit", "an old bicycle", "a ball", "new shoes"]  # fmt: skip
PLACES = ["in the park", "on the beach", "at home", "in a busy street", "near the river", "at the market",
          "in the garden", "on a train", "", "", "in the rain", "before dinner"]  # fmt: skip
MAX_BATCH = 64  # the server is started with --max-batch 64 so "too many texts" is cheap to send


def make_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}".strip()
        out.append(s[0].upper() + s[1:] + ".")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- requests
@dataclass
class Planned:
    """One request and the status it must get."""

    kind: str
    method: str
    path: str
    content: bytes | None
    expect: int
    content_type: str = "application/json"
    n_texts: int = 0


def good_request(rng: random.Random, pool: list[str], endpoint: str, max_texts: int) -> Planned:
    if endpoint == "embeddings":
        texts = rng.sample(pool, rng.randint(1, max_texts))
        return Planned("embeddings", "POST", "/v1/embeddings", json.dumps({"input": texts}).encode(), 200,
                       n_texts=len(texts))  # fmt: skip
    if endpoint == "similarity":
        a, b = rng.sample(pool, 2)
        return Planned(
            "similarity", "POST", "/similarity", json.dumps({"a": a, "b": b}).encode(), 200, n_texts=2
        )
    if endpoint == "search":
        body = {"query": rng.choice(pool), "top_k": rng.randint(1, 10)}
        return Planned("search", "POST", "/search", json.dumps(body).encode(), 200, n_texts=1)
    return Planned("health", "GET", "/health", None, 200)


MALFORMED_KINDS = ["invalid_json", "wrong_type", "empty_list", "too_many_texts", "text_too_long",
                   "unknown_field", "unknown_route", "wrong_method", "wrong_content_type", "bad_top_k",
                   "token_ids"]  # fmt: skip


def malformed_request(rng: random.Random, pool: list[str]) -> Planned:
    kind = rng.choice(MALFORMED_KINDS)
    text = rng.choice(pool)
    table = {
        "invalid_json": ("POST", "/v1/embeddings", b'{"input": ["unterminated', 422),
        "wrong_type": ("POST", "/similarity", json.dumps({"a": 3, "b": text}).encode(), 422),
        "empty_list": ("POST", "/v1/embeddings", b'{"input": []}', 422),
        "too_many_texts": (
            "POST",
            "/v1/embeddings",
            json.dumps({"input": [text] * (MAX_BATCH + 1)}).encode(),
            413,
        ),
        "text_too_long": ("POST", "/search", json.dumps({"query": "word " * 2001}).encode(), 413),
        "unknown_field": ("POST", "/search", json.dumps({"q": text}).encode(), 422),
        "unknown_route": ("POST", "/v1/completions", json.dumps({"prompt": text}).encode(), 404),
        "wrong_method": ("GET", "/v1/embeddings", None, 405),
        "wrong_content_type": ("POST", "/v1/embeddings", json.dumps({"input": text}).encode(), 415),
        "bad_top_k": ("POST", "/search", json.dumps({"query": text, "top_k": 1000}).encode(), 422),
        "token_ids": ("POST", "/v1/embeddings", b'{"input": [[101, 2023, 102]]}', 422),
    }
    method, path, content, expect = table[kind]
    ctype = "text/plain" if kind == "wrong_content_type" else "application/json"
    return Planned(f"malformed:{kind}", method, path, content, expect, ctype)


def check_body(plan: Planned, status: int, body: bytes) -> str | None:
    """None when the response is right, else the error kind."""
    if status != plan.expect:
        return f"{plan.kind}: HTTP {status} (expected {plan.expect})"
    try:
        data = json.loads(body)
    except ValueError:
        return f"{plan.kind}: response is not JSON"
    if status >= 400:
        ok = isinstance(data.get("error"), dict) and isinstance(data["error"].get("message"), str)
        return None if ok else f"{plan.kind}: error body without error.message"
    if plan.kind == "embeddings" and len(data.get("data", [])) != plan.n_texts:
        return f"{plan.kind}: {len(data.get('data', []))} embeddings for {plan.n_texts} texts"
    if plan.kind == "search" and not data.get("results"):
        return f"{plan.kind}: no results"
    return None


@dataclass
class Stats:
    by_kind_latency: dict[str, list[float]] = field(default_factory=dict)
    by_kind: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    texts: int = 0


async def send(client, plan: Planned, stats: Stats) -> None:
    import httpx

    headers = {"content-type": plan.content_type} if plan.content is not None else {}
    start = time.perf_counter()
    try:
        response = await client.request(plan.method, plan.path, content=plan.content, headers=headers)
        status, body = response.status_code, response.content
    except httpx.HTTPError as e:
        stats.errors[f"{plan.kind}: transport error {type(e).__name__}"] += 1
        return
    latency = time.perf_counter() - start
    stats.by_kind_latency.setdefault(plan.kind.split(":")[0], []).append(latency)
    stats.by_kind[plan.kind] += 1
    stats.statuses[status] += 1
    problem = check_body(plan, status, body)
    if problem:
        stats.errors[problem] += 1
    elif status == 200:
        stats.texts += plan.n_texts


async def run_load(args, base_url: str, pool: list[str], server_pid: int) -> tuple[Stats, float, int]:
    import httpx
    import psutil

    stats = Stats()
    peak = [0]
    process = psutil.Process(server_pid)
    done = asyncio.Event()

    async def watch_rss() -> None:
        while not done.is_set():
            try:
                peak[0] = max(peak[0], process.memory_info().rss)
            except psutil.Error:
                return
            await asyncio.sleep(0.05)

    endpoints = ["embeddings"] * 4 + ["similarity"] * 2 + ["search"] * 3 + ["health"]
    remaining = [args.requests]
    deadline = time.perf_counter() + args.duration

    async def worker(i: int, client) -> None:
        rng = random.Random(args.seed * 1000 + i)
        while True:
            if args.mixed:
                if time.perf_counter() >= deadline:
                    return
                if rng.random() < args.malformed:
                    plan = malformed_request(rng, pool)
                else:
                    plan = good_request(rng, pool, rng.choice(endpoints), args.max_texts)
            else:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
                plan = good_request(rng, pool, "embeddings", args.max_texts)
            await send(client, plan, stats)

    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=args.request_timeout) as client:
        for _ in range(3):  # warm-up, not counted
            await client.post("/v1/embeddings", json={"input": pool[:4]})
        watcher = asyncio.create_task(watch_rss())
        start = time.perf_counter()
        await asyncio.gather(*(worker(i, client) for i in range(args.clients)))
        elapsed = time.perf_counter() - start
        done.set()
        await watcher
    return stats, elapsed, peak[0]


# ---------------------------------------------------------------------------------------------- server
def build_index(model: str | None, sentences: list[str], directory: Path) -> None:
    from simcse.use.api import SimCSE

    m = SimCSE(model)
    m.build_index(sentences, index="flat")
    m.save_index(directory)


def start_server(args, port: int, index_dir: Path | None, precision: str = "auto") -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "simcse.serve"] + ([args.model] if args.model else [])
    cmd += ["--precision", precision, "--backend", args.backend]
    cmd += ["--port", str(port), "--log-level", "warning", "--max-batch", str(MAX_BATCH),
            "--max-text-chars", "10000", "--batch-size", str(args.batch_size)]  # fmt: skip
    if index_dir is not None:
        cmd += ["--index", str(index_dir)]
    env = {k: v for k, v in os.environ.items() if k != "SIMCSE_API_KEY"}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"serve_load: the server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit("serve_load: the server did not start within 180 s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="model directory (default: the embedded all-MiniLM-L6-v2)"
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000, help="embeddings mode: requests in all")
    parser.add_argument("--max-texts", type=int, default=8, help="texts per request: 1..N, uniform")
    parser.add_argument("--mixed", action="store_true", help="mixed endpoints for --duration seconds")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--malformed", type=float, default=0.05, help="mixed mode: share of bad requests")
    parser.add_argument("--index-size", type=int, default=2000, help="mixed mode: sentences in the index")
    parser.add_argument("--batch-size", type=int, default=64, help="server: texts per forward pass")
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="fp32,auto", help="comma-separated: one run per precision")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx", "openvino"))
    args = parser.parse_args()
    for name in ("clients", "requests", "max_texts", "index_size", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: give 1 or more")
    if args.duration <= 0 or args.request_timeout <= 0 or not 0 <= args.malformed < 1:
        parser.error("--duration and --request-timeout must be above 0, --malformed in [0, 1)")
    import torch
    from bench_common import print_cpu, write_results

    from simcse.core.runtime import choose_precision

    print_cpu()
    auto = choose_precision("auto", torch.device("cpu"), "encoding")
    precisions = list(dict.fromkeys(p.strip() for p in args.precision.split(",")))
    if not precisions or not set(precisions) <= {"auto", "fp32", "bf16", "fp16"}:
        parser.error(f"--precision {args.precision!r}: comma-separated auto, fp32, bf16 or fp16")
    if "auto" in precisions and auto.name in precisions:  # the same server twice
        precisions.remove("auto")
        print(f"precision auto: skipped, it is {auto.name} on this CPU ({auto.reason}): the {auto.name} run")
    rows = {precision: one_run(args, precision) for precision in precisions}
    mode = (
        f"mixed endpoints for {args.duration:g} s" if args.mixed else f"embeddings, {args.requests} requests"
    )
    head = (f"serve_load: {mode}, {args.clients} clients, model {args.model or 'all-MiniLM-L6-v2 (embedded)'}, "
            f"backend {args.backend}, {auto.line}")  # fmt: skip
    base = next(iter(rows.values()))["texts_per_s"]
    table = ["| precision | requests served | requests/s | texts/s | vs first | p50 ms | p99 ms | 5xx | errors | "
             "result |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for precision, r in rows.items():
        table.append(f"| {precision} | {r['served']} | {r['requests_per_s']:.1f} | {r['texts_per_s']:.1f} "
                     f"| {r['texts_per_s'] / base:.2f}x | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['5xx']} "
                     f"| {r['errors']} | {'PASS' if r['ok'] else 'FAIL'} |")  # fmt: skip
    print("\n" + head + "\n\n" + "\n".join(table))
    name = "serve_load_mixed" if args.mixed else "serve_load"
    print(f"\nwritten: {write_results(name, [head, '', *table], {'args': vars(args), 'runs': rows})}")
    return 0 if all(r["ok"] for r in rows.values()) else 1


def one_run(args, precision: str) -> dict:
    """One load test against a server in ``precision``: what it served, its rates, latencies and errors."""

    pool = make_sentences(max(args.index_size, 1000), seed=args.seed)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        index_dir = None
        if args.mixed:
            index_dir = Path(tmp) / "index"
            t = time.perf_counter()
            build_index(args.model, pool[: args.index_size], index_dir)
            print(f"index: {args.index_size} sentences built in {time.perf_counter() - t:.1f} s", flush=True)
        proc = start_server(args, port, index_dir, precision)
        try:
            stats, elapsed, peak_rss = asyncio.run(run_load(args, f"http://127.0.0.1:{port}", pool, proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

    latencies = [x for values in stats.by_kind_latency.values() for x in values]
    served = len(latencies)
    lat = np.array(latencies) * 1000 if latencies else np.zeros(1)
    five_xx = sum(n for s, n in stats.statuses.items() if s >= 500)
    errors = sum(stats.errors.values())
    mode = f"mixed, {args.duration:g} s" if args.mixed else f"embeddings, {args.requests} requests"
    from simcse.core.hardware import describe_cpu

    print(
        f"\nserve_load ({mode}, {args.clients} clients, model {args.model or 'all-MiniLM-L6-v2 (embedded)'}, "
        f"precision {precision}, backend {args.backend}, {describe_cpu()})"
    )
    print(f"  requests served:  {served} in {elapsed:.1f} s = {served / elapsed:.1f} req/s")
    print(f"  texts encoded:    {stats.texts} = {stats.texts / elapsed:.1f} texts/s (successful requests)")
    print(f"  latency:          p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, "
          f"max {lat.max():.1f} ms")  # fmt: skip
    print(f"  statuses:         {dict(sorted(stats.statuses.items()))}")
    if args.mixed:
        malformed = {k: v for k, v in stats.by_kind.items() if k.startswith("malformed:")}
        good = {k: v for k, v in stats.by_kind.items() if not k.startswith("malformed:")}
        print(f"  well-formed:      {dict(sorted(good.items()))}")
        print(f"  malformed (4xx expected): {sum(malformed.values())} {dict(sorted(malformed.items()))}")
        for kind, values in sorted(stats.by_kind_latency.items()):
            ms = np.array(values) * 1000
            print(
                f"  latency {kind + ':':12s} p50 {np.percentile(ms, 50):7.1f} ms, p99 {np.percentile(ms, 99):7.1f} ms"
            )
        print(f"  server peak RSS:  {peak_rss / 2**20:.0f} MiB")
    print(f"  5xx responses:    {five_xx}")
    print(f"  errors:           {errors}")
    for kind, n in stats.errors.most_common():
        print(f"    {n:6d}  {kind}")
    ok = errors == 0 and five_xx == 0 and served > 0
    print("PASS" if ok else "FAIL: errors above")
    return {"ok": ok, "served": served, "requests_per_s": served / elapsed, "texts_per_s": stats.texts / elapsed,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)), "5xx": five_xx,
            "errors": errors, "peak_rss_mib": peak_rss / 2**20 if args.mixed else None}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
