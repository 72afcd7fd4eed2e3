"""What every benchmark shares: the CPU line it prints first, the rows a CPU cannot run well (skipped unless
``--all-rows``), and the results file stamped with the CPU's flags, the date and the commit.

    from bench_common import print_cpu, skip_reason, write_results
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


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


def commit() -> str:
    """The checkout's commit (short), with ``+changes`` when the work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def write_results(name: str, lines: list[str], data: dict, results_dir: Path | None = None) -> Path:
    """``<results_dir>/<name>-<cpu class>.md`` (``lines`` under a header that stamps the CPU, its flags, the
    date, the commit and the command) and the same as ``.json`` (``data`` plus the stamp); returns the .md."""
    from simcse.core.hardware import cpu_facts

    out = Path(results_dir or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    stamp = {
        "cpu": cpu_facts(),
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "command": "python "
        + " ".join([Path(sys.argv[0]).as_posix().split(ROOT.as_posix() + "/")[-1], *sys.argv[1:]]),
    }
    facts = stamp["cpu"]
    header = [
        f"# {name} on a {facts['class']} CPU",
        "",
        f"- CPU: {facts['model']}, {facts['cores']} cores; flags: {' '.join(facts['flags']) or 'none of note'}",
        f"- date: {stamp['date']}; commit: {stamp['commit']}",
        f"- command: `{stamp['command']}`",
        "",
    ]
    path = out / f"{name}-{facts['class']}.md"
    path.write_text("\n".join(header + lines) + "\n", encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps(stamp | data, indent=2) + "\n", encoding="utf-8")
    return path
