"""CPU facts for benchmark output and precision choices, read from /proc/cpuinfo."""

from __future__ import annotations

from pathlib import Path

import pytest

from simcse.core import hardware

SAPPHIRE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: ignored
flags\t\t: fpu
"""
OLD = """processor\t: 0
model name\t: Intel(R) Xeon(R) CPU E5-2680 v4
flags\t\t: fpu sse2 avx2
"""


@pytest.fixture
def cpuinfo(monkeypatch, tmp_path):
    monkeypatch.delenv("SIMCSE_CPU_FLAGS", raising=False)  # the suite's own setting (tests/conftest.py)

    def use(text: str | None) -> None:
        hardware._cpuinfo.cache_clear()
        path = tmp_path / "cpuinfo"
        if text is not None:
            path.write_text(text, encoding="utf-8")
        real = Path

        def fake(p="", *rest):
            return path if str(p) == "/proc/cpuinfo" else real(p, *rest)

        monkeypatch.setattr(hardware, "Path", fake)

    yield use
    hardware._cpuinfo.cache_clear()


def test_a_cpu_with_amx_reports_its_bf16_units(cpuinfo):
    cpuinfo(SAPPHIRE)
    assert hardware.cpu_model() == "Intel(R) Xeon(R) Platinum 8480+"
    assert hardware.cpu_flags() == {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}
    assert hardware.bf16_units() == "AMX bf16 tiles and AVX512-BF16"
    line = hardware.describe_cpu()
    assert line.startswith("Intel(R) Xeon(R) Platinum 8480+, ") and "AMX bf16 tiles" in line


def test_a_cpu_without_bf16_units_says_so(cpuinfo):
    cpuinfo(OLD)
    assert hardware.bf16_units() is None
    assert "AMX" not in hardware.describe_cpu() and "AVX2" in hardware.describe_cpu()


def test_no_cpuinfo_still_gives_a_description(cpuinfo):
    cpuinfo(None)
    assert hardware.cpu_flags() == set() and hardware.bf16_units() is None
    assert hardware.describe_cpu()


def test_simcse_cpu_flags_replaces_what_the_cpu_reports(cpuinfo, monkeypatch):
    cpuinfo(SAPPHIRE)
    monkeypatch.setenv("SIMCSE_CPU_FLAGS", "none")
    assert hardware.cpu_flags() == set() and hardware.bf16_units() is None
    monkeypatch.setenv("SIMCSE_CPU_FLAGS", "avx2, avx512_bf16 made_up")
    assert hardware.cpu_flags() == {"avx2", "avx512_bf16"} and hardware.bf16_units() == "AVX512-BF16"


@pytest.mark.parametrize(("flags", "target", "cls"), [
    ({"avx2"}, "avx2", "avx2"),
    ({"avx2", "avx512f"}, "avx512", "avx512"),
    ({"avx2", "avx_vnni"}, "avx512_vnni", "avx512_vnni"),
    ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, "avx512_vnni", "avx512_vnni+bf16"),
    ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}, "amx", "amx+bf16"),
    (set(), "avx2", "no-avx2"),
])  # fmt: skip
def test_the_int8_class_and_the_cpu_class_follow_the_flags(cpuinfo, monkeypatch, flags, target, cls):
    cpuinfo(OLD)
    monkeypatch.setenv("SIMCSE_CPU_FLAGS", " ".join(sorted(flags)) or "none")
    expected_target = "avx2" if target == "avx512" else target
    assert hardware.int8_target() == expected_target == hardware.int8_target(flags)
    assert hardware.cpu_class() == cls
    facts = hardware.cpu_facts()
    assert facts["flags"] == sorted(flags) and facts["int8"] == expected_target and facts["class"] == cls
    assert facts["model"] == "Intel(R) Xeon(R) CPU E5-2680 v4" and facts["cores"] >= 1
