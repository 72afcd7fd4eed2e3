"""What the CPU can do: its model name and the matrix and vector units that decide which precision pays
(AMX and AVX512-BF16 make bf16 several times faster than fp32; without them bf16 is slower). Benchmarks
print :func:`describe_cpu` so that every number says which machine produced it.

``SIMCSE_CPU_FLAGS`` replaces the detected flags (space- or comma-separated; ``none`` for none): what
``precision auto`` assumes the CPU has. The test suite sets it to ``none`` so that it runs the same on every
machine, and a user can pin ``auto`` to fp32 on a bf16 machine with it."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

# /proc/cpuinfo flag -> what it gives
UNITS = {
    "amx_bf16": "AMX bf16 tiles",
    "amx_int8": "AMX int8 tiles",
    "avx512_bf16": "AVX512-BF16",
    "avx512_vnni": "AVX512-VNNI (int8)",
    "avx_vnni": "AVX-VNNI (int8)",
    "avx512f": "AVX512",
    "avx2": "AVX2",
}


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_model() -> str:
    """The CPU's model name, e.g. 'Intel(R) Xeon(R) Platinum 8480+'."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown CPU"


FLAGS_ENV = "SIMCSE_CPU_FLAGS"


def cpu_flags() -> set[str]:
    """The instruction-set flags of the CPU (Linux /proc/cpuinfo, or ``SIMCSE_CPU_FLAGS``), among UNITS."""
    override = os.environ.get(FLAGS_ENV)
    if override is not None:
        return set(override.replace(",", " ").split()) & set(UNITS)
    return set(_cpuinfo().get("flags", "").split()) & set(UNITS)


def bf16_units() -> str | None:
    """The bf16 units of this CPU in words (``AMX bf16 tiles``, ``AVX512-BF16``), or None without any."""
    names = [UNITS[f] for f in ("amx_bf16", "avx512_bf16") if f in cpu_flags()]
    return " and ".join(names) or None


def describe_cpu() -> str:
    """One line for benchmark output: model, cores this process may use, and the units that matter."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    units = [UNITS[f] for f in UNITS if f in cpu_flags()]
    return f"{cpu_model()}, {cores} cores" + (f", {', '.join(units)}" if units else "")
