"""GPU benchmark: our trainer against sentence-transformers on one GPU, at the paper's settings.

Measures, on one device, in one process, one configuration after the other:
  (a) unsup SimCSE training steps/s at batch 64, max length 32: ours in fp32 (TF32 matmuls), bf16, and
      bf16 + torch.compile;
  (b) the same training with sentence-transformers' MultipleNegativesRankingLoss (scale 20 = 1/0.05, the same
      loss) in bf16, in a plain loop (its trainer needs the `datasets` package, which may be absent);
  (c) sup SimCSE at batch 512 with hard negatives (3 columns), ours in bf16;
  (d) encode throughput: SimCSE.encode against SentenceTransformer.encode (batch 128, bf16 autocast);
then prints one table and the projected time of the paper's full runs (unsup: 1M sentences, 15,625 steps at
batch 64, STS-B dev every 250 steps; sup: 3 epochs of 275,601 triples at batch 512) for this model.

It installs nothing and needs no network: torch, transformers and sentence-transformers must be present, the
package is imported from ./src, and the model is a local directory (default: the embedded
all-MiniLM-L6-v2, or .device/all-MiniLM-L6-v2 carried next to the repository). Training text comes from
$SIMCSE_DATA_DIR when present (wiki and NLI samples), else synthetic sentences from the model's vocabulary.

    bash benchmarks/gpu_bench.sh                       # GPU, ~4 minutes for MiniLM on an H100-class GPU
    bash benchmarks/gpu_bench.sh --cpu --steps 5       # the same table on the CPU, small budget

`make bench` runs ``--cpu --steps 5 --skip compile``: 6 min 1 s on 2 AVX2-only cores (no bf16 units, so the
bf16 rows run in fp32 and say so).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

UNSUP_BATCH, SUP_BATCH, MAX_LEN = 64, 512, 32
PAPER_UNSUP_STEPS = math.ceil(1_000_000 / UNSUP_BATCH)  # 15,625
PAPER_SUP_STEPS = 3 * math.ceil(275_601 / SUP_BATCH)  # 1,617
EVAL_EVERY = 250
DEV_SENTENCES = 4_000  # distinct STS-B dev + SICK-R dev sentences encoded per evaluation (approx.)


# ---------------------------------------------------------------------------------------------- inputs
def find_model(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    carried = REPO / ".device" / "all-MiniLM-L6-v2"
    if carried.is_dir():
        return carried
    from simcse.modeling.model_dir import embedded_model_path

    return embedded_model_path()


def synthetic_sentences(model_dir: Path, n: int, seed: int) -> list[str]:
    """Sentences of 6-40 words drawn from the tokenizer's whole-word vocabulary (most exceed 32 tokens
    when long, as Wikipedia sentences do)."""
    from transformers import AutoTokenizer

    vocab = [
        w for w in AutoTokenizer.from_pretrained(str(model_dir)).get_vocab() if w.isalpha() and len(w) > 2
    ]
    rng = random.Random(seed)
    return [" ".join(rng.choices(vocab, k=rng.randint(6, 40))) + "." for _ in range(n)]


def repeat_to(items: list, n: int) -> list:
    """The first n items of ``items`` repeated (a small sample standing in for a large file)."""
    return [items[i % len(items)] for i in range(n)]


def training_sentences(model_dir: Path, data_dir: Path | None, n: int) -> list[str]:
    path = data_dir / "wiki" / "wiki1m_for_simcse.head11914.txt" if data_dir else None
    if path and path.is_file():
        lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        random.Random(0).shuffle(lines)
        return repeat_to(lines, n)
    return synthetic_sentences(model_dir, n, seed=0)


def training_triples(model_dir: Path, data_dir: Path | None, n: int) -> list[tuple[str, str, str]]:
    import csv

    found = sorted((data_dir / "nli").glob("*.csv")) if data_dir and (data_dir / "nli").is_dir() else []
    if found:
        path = found[0]
        with path.open(encoding="utf-8", newline="") as f:
            rows = [tuple(r[:3]) for r in list(csv.reader(f))[1:] if len(r) >= 3]
        return repeat_to(rows, n)
    s = synthetic_sentences(model_dir, 3 * n, seed=1)
    return list(zip(s[0::3], s[1::3], s[2::3]))


def write_rows(path: Path, rows: list) -> Path:
    import csv

    with path.open("w", encoding="utf-8", newline="") as f:
        if rows and isinstance(rows[0], tuple):
            w = csv.writer(f)
            w.writerow(["sent0", "sent1", "hard_neg"])
            w.writerows(rows)
        else:
            f.write("\n".join(s.replace("\n", " ") for s in rows) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- measure
def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_ours(args, model_dir: Path, train_file: Path, objective: str, batch: int, precision: str,
             compile_model: bool, tmp: Path) -> dict:  # fmt: skip
    from simcse.training.config import TrainConfig
    from simcse.training.loop import train

    every = math.gcd(args.warmup, args.steps)  # a sync (loss.item) only every `every` steps
    out = tmp / f"ours-{objective}-{precision}-{int(compile_model)}"
    config = TrainConfig(
        model_name_or_path=str(model_dir), train_file=str(train_file), output_dir=str(out),
        objective=objective, pooler="cls", batch_size=batch, max_seq_len=MAX_LEN,
        learning_rate=3e-5 if objective == "unsup" else 5e-5, max_steps=args.warmup + args.steps,
        precision=precision, compile=compile_model, compile_backend=args.compile_backend,
        device=args.device, dev_eval=False, final_eval="none", save_steps=0, logging_steps=every,
        progress_bar=False, tensorboard=False, seed=0, overwrite_output_dir=True,
    )  # fmt: skip
    device = torch.device(args.device)
    reset_memory(device)
    train(config)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    times = {r["step"]: r["time"] for r in records if r["kind"] == "train"}
    seconds = times[args.warmup + args.steps] - times[args.warmup]
    return {"steps_per_s": args.steps / seconds, "rows_per_s": batch * args.steps / seconds,
            "peak_gb": peak_memory_gb(device)}  # fmt: skip


def run_st_mnrl(args, model_dir: Path, sentences: list[str], bf16: bool = True) -> dict:
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6.1
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    device = torch.device(args.device)
    reset_memory(device)
    # the directory's own pipeline (all-MiniLM-L6-v2: mean pooling + normalisation); pooling costs nothing here
    model = SentenceTransformer(
        str(model_dir), device=str(device), model_kwargs={"dtype": torch.float32}
    ).float()
    model.max_seq_length = MAX_LEN
    loss_fn = MultipleNegativesRankingLoss(model, scale=20.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, fused=device.type in ("cuda", "cpu"))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    model.train()
    order = list(range(len(sentences)))
    random.Random(0).shuffle(order)
    start = None
    every = math.gcd(args.warmup, args.steps)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(device)
            start = time.perf_counter()
        texts = [sentences[order[(step * UNSUP_BATCH + i) % len(order)]] for i in range(UNSUP_BATCH)]
        tokenize = getattr(model, "preprocess", None) or model.tokenize  # renamed in sentence-transformers 6
        tokens = {k: v for k, v in tokenize(texts).items() if isinstance(v, torch.Tensor)}
        features = [{k: v.to(device, non_blocking=True) for k, v in tokens.items()} for _ in range(2)]
        with autocast:
            loss = loss_fn(features, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % every == 0:
            loss.item()  # the same sync cadence as our trainer's logging
    sync(device)
    seconds = time.perf_counter() - start
    result = {"steps_per_s": args.steps / seconds, "rows_per_s": UNSUP_BATCH * args.steps / seconds,
              "peak_gb": peak_memory_gb(device)}  # fmt: skip
    del model, loss_fn, optimizer
    return result


def run_encode(args, model_dir: Path, sentences: list[str]) -> dict[str, float]:
    from sentence_transformers import SentenceTransformer

    from simcse.use.api import SimCSE

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.encode_precision == "bf16" else None
    # the directory's own pooler, as sentence-transformers uses it (mean pooling for a plain HF directory)
    pooler = None if (model_dir / "modules.json").is_file() else "avg"
    ours = SimCSE(str(model_dir), pooler=pooler, device=device, dtype=dtype)
    st = SentenceTransformer(
        str(model_dir), device=str(device), model_kwargs={"dtype": torch.float32}
    ).float()
    st.max_seq_length = ours.encoder.max_length
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if dtype else nullcontext()
    ours.encode(sentences[:256], batch_size=128)  # warm-up
    with autocast:
        st.encode(sentences[:256], batch_size=128)
    a = ours.encode(sentences[:256], max_length=None, output="numpy")
    b = st.encode(sentences[:256], normalize_embeddings=True)
    agreement = float((a * b).sum(1).min())
    if agreement < 0.999:
        raise RuntimeError(f"embeddings disagree with sentence-transformers (min cosine {agreement:.4f})")
    best = {"ours": 0.0, "st": 0.0}
    for _ in range(args.encode_rounds):
        sync(device)
        t = time.perf_counter()
        ours.encode(sentences, batch_size=128, max_length=None, output="numpy")
        sync(device)
        best["ours"] = max(best["ours"], len(sentences) / (time.perf_counter() - t))
        t = time.perf_counter()
        with autocast:
            st.encode(sentences, batch_size=128)
        sync(device)
        best["st"] = max(best["st"], len(sentences) / (time.perf_counter() - t))
    return best


# ---------------------------------------------------------------------------------------------- report
def hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from simcse.core.hardware import describe_cpu

    return f"CPU ({describe_cpu()}; {torch.get_num_threads()} torch threads)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (small budget)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps per run (GPU 100, CPU 5)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps per run (GPU 10, CPU 3)")
    parser.add_argument("--model", default=None, help="model directory (default: the embedded MiniLM)")
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR"))
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--encode-sentences", type=int, default=None, help="GPU 20000, CPU 1000")
    parser.add_argument("--encode-rounds", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma-separated: fp32,bf16,compile,st,sup,encode")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--all-rows", action="store_true",
                        help="--cpu: bf16 rows even on a CPU without bf16 units (emulated there, and slow)")  # fmt: skip
    args = parser.parse_args(argv)
    from bench_common import print_cpu, skip_reason

    print_cpu()
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device; pass --cpu to run on the CPU")
    args.device = "cpu" if args.cpu else "cuda"
    args.steps = args.steps or (5 if args.cpu else 100)
    args.warmup = args.warmup or (3 if args.cpu else 10)
    args.encode_precision = "fp32" if args.cpu else "bf16"  # CPUs without bf16 units are slower in bf16
    n_encode = args.encode_sentences or (1000 if args.cpu else 20000)
    skip = {s for s in args.skip.split(",") if s}
    model_dir = find_model(args.model)
    data_dir = Path(args.data_dir) if args.data_dir else None
    device = torch.device(args.device)
    half = "bf16" if (args.cpu or torch.cuda.is_bf16_supported()) else "fp16"
    no_bf16 = None if (not args.cpu or args.all_rows) else skip_reason("bf16")
    if no_bf16:  # the half-precision rows in fp32 (the unsup bf16 row is then the fp32 one: skipped)
        half = "fp32"
        print(
            f"gpu_bench: {no_bf16}: the sup, compile and MNRL rows run in fp32 (--all-rows: bf16)", flush=True
        )

    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        need = UNSUP_BATCH * (args.warmup + args.steps)
        sentences = training_sentences(model_dir, data_dir, max(need, n_encode))
        unsup_file = write_rows(tmp / "unsup.txt", sentences[:need])
        sup_file = write_rows(
            tmp / "sup.csv", training_triples(model_dir, data_dir, SUP_BATCH * (args.warmup + args.steps))
        )

        def record(name: str, kind: str, precision: str, fn) -> None:
            print(f"gpu_bench: {name} ({precision}) ...", file=sys.stderr, flush=True)
            try:
                results.append({"run": name, "kind": kind, "precision": precision, **fn()})
            except Exception as e:  # one failing configuration must not hide the others
                results.append(
                    {"run": name, "kind": kind, "precision": precision, "error": f"{type(e).__name__}: {e}"}
                )
                print(f"gpu_bench: {name} failed: {e}", file=sys.stderr)

        if "fp32" not in skip:
            record(
                "unsup simcse",
                "unsup",
                "fp32" + ("" if args.cpu else "+tf32"),
                lambda: run_ours(args, model_dir, unsup_file, "unsup", UNSUP_BATCH, "fp32", False, tmp),
            )
        if no_bf16 and "bf16" not in skip:
            results.append({"run": "unsup simcse", "kind": "unsup", "precision": "bf16", "skipped": no_bf16})
        elif "bf16" not in skip:
            record(
                "unsup simcse",
                "unsup",
                half,
                lambda: run_ours(args, model_dir, unsup_file, "unsup", UNSUP_BATCH, half, False, tmp),
            )
        if "compile" not in skip:
            record(
                "unsup simcse",
                "unsup",
                f"{half}+compile",
                lambda: run_ours(args, model_dir, unsup_file, "unsup", UNSUP_BATCH, half, True, tmp),
            )
        if "st" not in skip:
            record(
                "unsup sentence-transformers MNRL",
                "unsup",
                "fp32" if no_bf16 else "bf16",
                lambda: run_st_mnrl(args, model_dir, sentences, bf16=not no_bf16),
            )
        if "sup" not in skip:
            record(
                "sup simcse (batch 512, hard neg)",
                "sup",
                half,
                lambda: run_ours(args, model_dir, sup_file, "sup", SUP_BATCH, half, False, tmp),
            )
        if "encode" not in skip:
            encode: dict[str, float] = {}

            def measure_encode() -> dict:
                encode.update(run_encode(args, model_dir, sentences[:n_encode]))
                return {"sentences_per_s": encode["ours"], "st_sentences_per_s": encode["st"]}

            record("encode SimCSE vs SentenceTransformer", "encode", args.encode_precision, measure_encode)

    print_table(results, device, model_dir, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_name(device), "model": str(model_dir),
                                               "steps": args.steps, "results": results}, indent=2) + "\n")  # fmt: skip
    return 1 if any("error" in r for r in results) else 0


def print_table(results: list[dict], device: torch.device, model_dir: Path, args) -> None:
    print(f"\n## gpu_bench: {device_name(device)}, torch {torch.__version__}, model {model_dir.name}, "
          f"{args.steps} measured steps after {args.warmup} warm-up, {time.strftime('%Y-%m-%d')}\n")  # fmt: skip
    print("| run | precision | steps/s | rows/s (sentences or triples) | peak GPU memory |")
    print("|---|---|---:|---:|---:|")
    for r in results:
        if "skipped" in r:
            print(f"| {r['run']} | {r['precision']} | {r['skipped']} | | |")
        elif "error" in r:
            print(f"| {r['run']} | {r['precision']} | failed: {r['error'][:80]} | | |")
        elif r["kind"] == "encode":
            print(f"| {r['run']} | {r['precision']} | | {r['sentences_per_s']:.0f} vs {r['st_sentences_per_s']:.0f} "
                  f"({r['sentences_per_s'] / r['st_sentences_per_s']:.2f}x) | |")  # fmt: skip
        else:
            mem = f"{r['peak_gb']:.2f} GB" if r.get("peak_gb") is not None else "-"
            print(
                f"| {r['run']} | {r['precision']} | {r['steps_per_s']:.2f} | {r['rows_per_s']:.0f} | {mem} |"
            )
    ok = [r for r in results if "error" not in r and "skipped" not in r]
    ours = [r for r in ok if r["kind"] == "unsup" and "simcse" in r["run"]]
    st = [r for r in ok if "MNRL" in r["run"]]
    sup = [r for r in ok if r["kind"] == "sup"]
    enc = [r for r in ok if r["kind"] == "encode"]
    print()
    if ours and st:
        best = max(ours, key=lambda r: r["steps_per_s"])
        same = [r for r in ours if r["precision"] == st[0]["precision"]]
        ratio = f"{same[0]['steps_per_s'] / st[0]['steps_per_s']:.2f}x at equal precision, " if same else ""
        print(f"unsup: ours vs sentence-transformers MNRL: {ratio}"
              f"{best['steps_per_s'] / st[0]['steps_per_s']:.2f}x best ({best['precision']})")  # fmt: skip
    eval_s = DEV_SENTENCES / enc[0]["sentences_per_s"] if enc else 0.0
    if ours:
        best = max(ours, key=lambda r: r["steps_per_s"])
        train_s = PAPER_UNSUP_STEPS / best["steps_per_s"]
        evals = PAPER_UNSUP_STEPS // EVAL_EVERY
        print(f"projected paper unsup run ({PAPER_UNSUP_STEPS} steps at batch 64, {best['precision']}): "
              f"{hms(train_s)} training + {hms(evals * eval_s)} for {evals} dev evaluations")  # fmt: skip
    if sup:
        train_s = PAPER_SUP_STEPS / sup[0]["steps_per_s"]
        evals = PAPER_SUP_STEPS // EVAL_EVERY
        print(f"projected paper sup run ({PAPER_SUP_STEPS} steps at batch 512): {hms(train_s)} training + "
              f"{hms(evals * eval_s)} for {evals} dev evaluations")  # fmt: skip
    print(f"(projections for {model_dir.name}; BERT-base is ~5-6x the compute per step)")


if __name__ == "__main__":
    sys.exit(main())
