"""Several runs of one setting: mean ± sample std and n, per task and average (simcse eval --seeds)."""

from __future__ import annotations

import json

import pytest

from simcse.evaluation.report import seed_summary, seed_summary_table
from tests.helpers import assert_one_line_error, run


def _result(stsb, sick, mr=None):
    tasks = {"STSBenchmark": {"spearman": stsb}, "SICKRelatedness": {"spearman": sick}}
    if mr is not None:
        tasks["MR"] = {"acc": mr, "devacc": mr}
    return {"mode": "test", "tasks": tasks, "avg": {"sts": (stsb + sick) / 2}}


def test_mean_sample_std_and_n():
    summary = seed_summary([_result(80.0, 70.0, 81.0), _result(82.0, 74.0, 83.0), _result(84.0, 72.0)])
    assert summary["n"] == 3
    assert summary["tasks"]["STSBenchmark"] == {"mean": 82.0, "std": 2.0, "n": 3}
    assert summary["tasks"]["SICKRelatedness"]["std"] == pytest.approx(2.0)
    assert summary["tasks"]["MR"] == {"mean": 82.0, "std": pytest.approx(2**0.5), "n": 2}
    assert summary["avg"]["sts"]["mean"] == pytest.approx(77.0)
    table = seed_summary_table(summary)
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| mean")]
    assert [c.strip() for c in rows[0]] == [
        "mean ± std (n=3)",
        "82.00 ± 2.00",
        "72.00 ± 2.00",
        "77.00 ± 1.73",
    ]
    assert [c.strip() for c in rows[1]] == ["mean ± std (n=3)", "82.00 ± 1.41 (n=2)"]


def test_cli_seeds_over_several_runs(tiny_bert, tiny_bert4, data_dir, capsys, tmp_path):
    args = ["eval", str(tiny_bert), str(tiny_bert4), "--tasks", "STSBenchmark", "--mode", "dev", "--quiet",
            "--data-dir", str(data_dir), "--seeds", "--output", str(tmp_path / "r.json")]  # fmt: skip
    code, out, _ = run(capsys, args)
    assert code == 0 and "| mean ± std (n=2) |" in out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert len(saved["runs"]) == 2 and saved["seeds"]["n"] == 2
    values = [r["tasks"]["STSBenchmark"]["spearman"] for r in saved["runs"]]
    assert saved["seeds"]["tasks"]["STSBenchmark"]["mean"] == pytest.approx(sum(values) / 2)
    code, _, err = run(capsys, ["eval", str(tiny_bert), "--seeds", "--tasks", "STSBenchmark"])
    assert_one_line_error(code, err, "--seeds needs two or more runs")
