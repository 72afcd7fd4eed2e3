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


def cpu_cores() -> int:
    """The cores this process may use (its affinity, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def describe_cpu() -> str:
    """One line for benchmark output: model, cores this process may use, and the units that matter."""
    units = [UNITS[f] for f in UNITS if f in cpu_flags()]
    return f"{cpu_model()}, {cpu_cores()} cores" + (f", {', '.join(units)}" if units else "")


# the int8 classes of CPUs, from the arithmetic their int8 kernels use (``simcse export --target-cpu``):
INT8_TARGETS = {
    "avx2": "no VNNI or AMX: int8 through AVX2's u8 x s8 multiply-add, whose 16-bit sums saturate",
    "avx512_vnni": "VNNI (AVX512-VNNI or AVX-VNNI): u8 x s8 products summed in 32 bits, no saturation",
    "amx": "AMX int8 tiles (and VNNI)",
}


def int8_target(flags: set[str] | None = None) -> str:
    """The int8 class (a key of :data:`INT8_TARGETS`) of a CPU with ``flags`` (None: this CPU's,
    :func:`cpu_flags`): ``amx`` with AMX-int8, ``avx512_vnni`` with either VNNI, else ``avx2`` (the class
    of any CPU without them, Arm and older x86 included: its schemes hold everywhere).

    Args:
        flags: instruction-set flags as /proc/cpuinfo names them; None for this CPU's.

    Returns:
        ``amx``, ``avx512_vnni`` or ``avx2``.
    """
    flags = cpu_flags() if flags is None else flags
    if "amx_int8" in flags:
        return "amx"
    if flags & {"avx512_vnni", "avx_vnni"}:
        return "avx512_vnni"
    return "avx2"


def cpu_class() -> str:
    """A short name of this CPU's class for file names (``benchmarks/results/encode_speed-<class>.md``): the
    int8 class, with ``+bf16`` where it has bf16 units and ``avx512`` for AVX512 without VNNI.

    Returns:
        e.g. ``avx2``, ``avx512``, ``avx512_vnni``, ``avx512_vnni+bf16``, ``amx+bf16``.
    """
    flags = cpu_flags()
    name = int8_target(flags)
    if name == "avx2" and "avx512f" in flags:
        name = "avx512"
    elif name == "avx2" and "avx2" not in flags:
        name = "no-avx2"
    return name + ("+bf16" if bf16_units() else "")


def cpu_facts() -> dict[str, object]:
    """This CPU as data, for the files that record where something was measured or checked
    (``simcse_export.json``, benchmark results).

    Returns:
        ``model``, ``cores``, ``flags`` (the ones among :data:`UNITS`, sorted), ``int8`` (its
        :func:`int8_target`) and ``class`` (:func:`cpu_class`).
    """
    return {
        "model": cpu_model(),
        "cores": cpu_cores(),
        "flags": sorted(cpu_flags()),
        "int8": int8_target(),
        "class": cpu_class(),
    }
