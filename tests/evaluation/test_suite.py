"""`evaluate()` and `simcse eval` on a tiny model and the real data: modes, whitening, cache, outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simcse.cli import main
from simcse.evaluation import evaluate
from simcse.modeling.encoder import Encoder


@pytest.fixture(scope="module")
def tiny(tiny_bert):
    return Encoder.load(str(tiny_bert), "avg")


def test_dev_mode_geometry_whitening_and_cache(tiny, data_dir, tmp_path):
    plain = evaluate(tiny, "sts,geometry", mode="dev", data_dir=data_dir, cache_dir=tmp_path)
    assert set(plain["tasks"]) == {"STSBenchmark", "SICKRelatedness", "geometry"}
    assert plain["tasks"]["STSBenchmark"]["split"] == "dev" and plain["tasks"]["STSBenchmark"]["n"] == 1500
    geo = plain["tasks"]["geometry"]
    assert geo["n_positive"] > 0 and 0 <= geo["align"] <= 4 and geo["uniform"] <= 0
    assert "sts" in plain["avg"]
    cached = evaluate(tiny, "sts,geometry", mode="dev", data_dir=data_dir, cache_dir=tmp_path)
    assert cached["seconds"]["encode"] == 0.0
    assert cached["tasks"]["STSBenchmark"]["spearman"] == plain["tasks"]["STSBenchmark"]["spearman"]
    whitened = evaluate(tiny, "STSBenchmark", mode="dev", data_dir=data_dir, whiten="self", whiten_dim=8)
    assert whitened["whiten"] == "self" and whitened["whiten_dim"] == 8
    assert whitened["tasks"]["STSBenchmark"]["spearman"] != pytest.approx(
        plain["tasks"]["STSBenchmark"]["spearman"]
    )
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a man plays\nthe dog runs\nthree birds\nthe old man said no\n", encoding="utf-8")
    from_file = evaluate(
        tiny, "STSBenchmark", mode="dev", data_dir=data_dir, whiten=str(corpus), whiten_dim=3
    )
    assert np.isfinite(from_file["tasks"]["STSBenchmark"]["spearman"])


def test_aggregate_changes_only_multi_subset_years(tiny, data_dir):
    results = {
        agg: evaluate(tiny, "STS12,STSBenchmark", data_dir=data_dir, aggregate=agg)
        for agg in ("all", "wmean")
    }
    assert results["all"]["tasks"]["STS12"]["spearman"] != results["wmean"]["tasks"]["STS12"]["spearman"]
    assert (
        results["all"]["tasks"]["STSBenchmark"]["spearman"]
        == results["wmean"]["tasks"]["STSBenchmark"]["spearman"]
    )
    assert set(results["all"]["tasks"]["STS12"]["subsets"]) == {
        "MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"
    }  # fmt: skip


def test_simcse_eval_cli_writes_json_csv_and_tables(tiny_bert, data_dir, tmp_path, capsys):
    out, csv_path = tmp_path / "r.json", tmp_path / "runs.csv"
    code = main(["eval", str(tiny_bert), "--pooler", "avg", "--tasks", "STSBenchmark,SICKRelatedness,MRPC", "--mode",
                 "fasttest", "--data-dir", str(data_dir), "--output", str(out), "--csv", str(csv_path), "--quiet",
                 "--metric", "pearson"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| STS-B | SICK-R |" in printed and "| MRPC  |" in printed
    result = json.loads(out.read_text())
    assert result["tasks"]["MRPC"]["f1"] > 0 and result["mode"] == "fasttest"
    assert result["tasks"]["STSBenchmark"]["n"] == 1379
    assert len(csv_path.read_text().splitlines()) == 2
