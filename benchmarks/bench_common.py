"""What every benchmark shares: the CPU line it prints first, the rows a CPU cannot run well (skipped unless
``--all-rows``), the Wikipedia sentences it trains on, its child processes' results (or why they failed), and
the results file stamped with the CPU's flags, the date and the commit.

    from bench_common import print_cpu, skip_reason, write_results
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WIKI_ROWS = 11_914  # the data directory's sample of wiki1m: the same sentences on every machine


def cpu_line() -> str:
    """The CPU, the cores this process may use, its vector / matrix units, and what they mean for bf16 and
    int8."""
    from simcse.core.hardware import INT8_TARGETS, bf16_units, describe_cpu, int8_target

    bf16 = bf16_units() or "none (bf16 is emulated, slower than fp32)"
    target = int8_target()
    return f"CPU: {describe_cpu()}; bf16 units: {bf16}; int8: {target} ({INT8_TARGETS[target]})"


def print_cpu() -> None:
    """Print :func:`cpu_line` (every benchmark's first line)."""
    print(cpu_line(), flush=True)


def skip_reason(needs: str | None) -> str | None:
    """Why a row that needs ``needs`` (``bf16`` units, ``int8`` instructions, or None) is skipped on this CPU
    by default; None when it runs well here."""
    from simcse.core.hardware import bf16_units, cpu_flags, int8_target

    if needs == "bf16" and bf16_units() is None:
        return "skipped: this CPU has no bf16 units (AMX, AVX512-BF16), bf16 is emulated and slower than fp32"
    if needs == "int8" and "avx2" not in cpu_flags() and int8_target() == "avx2":
        return "skipped: this CPU has no AVX2, VNNI or AMX for the int8 kernels"
    return None


def write_results(name: str, lines: list[str], data: dict, results_dir: Path | None = None) -> Path:
    """``<results_dir>/<name>-<cpu class>.md`` (``lines`` under a header that stamps the CPU, its flags, the
    date, the commit and the command: :func:`simcse.core.provenance.provenance`) and the same as ``.json``
    (``data`` plus the stamp), each written atomically; returns the .md."""
    from simcse.core.files import write_text_atomic
    from simcse.core.hardware import cpu_facts
    from simcse.core.provenance import provenance

    out = Path(results_dir or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    stamp = provenance() | {"cpu": cpu_facts()}
    facts = stamp["cpu"]
    header = [
        f"# {name}: a CPU of class {facts['class']}",
        "",
        f"- CPU: {facts['model']}, {facts['cores']} cores; flags: {' '.join(facts['flags']) or 'none of note'}",
        f"- date: {stamp['date']}; commit: {stamp['commit']}",
        f"- command: `{stamp['command']}`",
        "",
    ]
    path = out / f"{name}-{facts['class']}.md"
    write_text_atomic(path, "\n".join(header + lines) + "\n")
    write_text_atomic(path.with_suffix(".json"), json.dumps(stamp | data, indent=2) + "\n")
    return path


def wiki_sentences(data_dir: str | Path | None) -> list[str]:
    """The first :data:`WIKI_ROWS` lines of the data directory's wiki1m (its head sample does), blank lines
    dropped; exits with the one-line error that names the fetch command when neither is there."""
    from simcse.core.errors import SimCSEError
    from simcse.data.download import ensure_dataset

    try:
        path = ensure_dataset("wiki1m", data_dir, download=False, rows=WIKI_ROWS)
    except SimCSEError as err:
        sys.exit(f"{Path(sys.argv[0]).name}: {err}")
    with path.open(encoding="utf-8") as f:
        return [line.rstrip("\n") for line in itertools.islice(f, WIKI_ROWS) if line.strip()]


def failure_line(proc: subprocess.CompletedProcess) -> str:
    """Why a child process failed, in one line: the last line of its stderr, else its exit code."""
    lines = proc.stderr.strip().splitlines() if proc.stderr else []
    return lines[-1][:200] if lines else f"exit code {proc.returncode}"


def run_child(cmd: list[str], env: dict | None = None) -> dict:
    """Run a benchmark's child process: the JSON of its last ``RESULT {...}`` line, or ``{"failed": why}``
    (:func:`failure_line`; the end of its stderr goes to ours, for whoever reads the log)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode == 0 and results:
        return json.loads(results[-1][len("RESULT ") :])
    print(f"{' '.join(cmd[:3])} ... failed:\n{proc.stderr[-4000:]}", file=sys.stderr)
    return {"failed": failure_line(proc)}
