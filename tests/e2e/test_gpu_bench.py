"""benchmarks/gpu_bench.sh on the CPU at a tiny budget: every configuration runs and the table is printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from simcse.core.runtime import enable_tf32
from tests.helpers import make_tiny_bert

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_bench_runs_on_cpu_with_a_tiny_model(tmp_path, data_dir):
    pytest.importorskip("sentence_transformers")
    model = make_tiny_bert(tmp_path / "tiny")
    out = tmp_path / "bench.json"
    env = {**os.environ, "SIMCSE_DATA_DIR": str(data_dir), "PYTHON": sys.executable}
    # aot_eager: the compile path without minutes of C++ code generation on two cores
    cmd = ["bash", str(ROOT / "benchmarks" / "gpu_bench.sh"), "--cpu", "--steps", "5", "--warmup", "1",
           "--model", str(model), "--compile-backend", "aot_eager", "--encode-sentences", "300", "--json", str(out), "--all-rows"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| unsup simcse | bf16+compile |" in proc.stdout
    assert "projected paper unsup run" in proc.stdout and "projected paper sup run" in proc.stdout
    results = json.loads(out.read_text())["results"]
    runs = {(r["run"], r["precision"]) for r in results}
    assert {("unsup simcse", "fp32"), ("unsup simcse", "bf16"), ("unsup simcse", "bf16+compile"),
            ("unsup sentence-transformers MNRL", "bf16"), ("sup simcse (batch 512, hard neg)", "bf16")} <= runs  # fmt: skip
    for r in results:
        assert "error" not in r, r
        assert (r.get("steps_per_s") or r.get("sentences_per_s")) > 0


def test_gpu_bench_refuses_to_run_without_a_gpu_unless_told():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_bench.sh")], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "pass --cpu" in proc.stderr


def test_tf32_switch_uses_the_current_api():
    matmul = torch.backends.cuda.matmul
    before = getattr(matmul, "fp32_precision", None)
    try:
        enable_tf32()
        if before is not None:
            assert matmul.fp32_precision == "tf32"
    finally:
        if before is not None:
            matmul.fp32_precision = before
