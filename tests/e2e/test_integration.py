"""The embedded model (all-MiniLM-L6-v2) on the real SentEval data: published numbers and a short training."""

from __future__ import annotations

import json

import pytest

from simcse.evaluation import evaluate, sts
from simcse.modeling.encoder import Encoder

pytestmark = pytest.mark.integration

# Spearman x 100, cosine, mean pooling. STS12-16 and STS-B equal the published MTEB numbers of
# sentence-transformers/all-MiniLM-L6-v2 to 0.01; SICK-R is the SentEval test split (MTEB's differs).
EXPECTED_TEST = {"STS12": 72.37, "STS13": 80.60, "STS14": 75.59, "STS15": 85.39, "STS16": 78.99,
                 "STSBenchmark": 82.03, "SICKRelatedness": 77.15}  # fmt: skip
EXPECTED_COUNTS = {"STS12": 3108, "STS13": 1500, "STS14": 3750, "STS15": 3000, "STS16": 1186,
                   "STSBenchmark": 1379, "SICKRelatedness": 4927}  # fmt: skip


def test_pair_counts_of_the_real_tree(data_dir):
    root = data_dir / "senteval" / "downstream"
    for task, n in EXPECTED_COUNTS.items():
        assert sts.load_sts_task(task, root, "test").n == n, task
    assert sts.load_sts_task("STSBenchmark", root, "dev").n == 1500
    assert sts.load_sts_task("SICKRelatedness", root, "dev").n == 500


@pytest.fixture(scope="module")
def embedded_test_result(data_dir, embedded_model):
    return evaluate(None, "sts", mode="test", data_dir=data_dir)


def test_embedded_model_sts_table_matches_published_values(embedded_test_result):
    got = {t: round(r["spearman"], 2) for t, r in embedded_test_result["tasks"].items()}
    assert got == EXPECTED_TEST
    assert {t: r["n"] for t, r in embedded_test_result["tasks"].items()} == EXPECTED_COUNTS
    assert embedded_test_result["avg"]["sts"] == pytest.approx(sum(EXPECTED_TEST.values()) / 7, abs=0.01)


@pytest.mark.slow
def test_dev_evaluator_and_cls_baseline(data_dir, embedded_model):
    from simcse.evaluation.dev import DevEvaluator

    evaluator = DevEvaluator(data_dir / "senteval" / "downstream")
    scores = evaluator(Encoder.load(None, "cls_before_pooler"))
    assert round(scores["stsb_spearman"], 2) == 79.73  # the CLS embedding before any training
    same = evaluate(
        None, "STSBenchmark,SICKRelatedness", mode="dev", data_dir=data_dir, pooler="cls_before_pooler"
    )
    assert scores["stsb_spearman"] == pytest.approx(same["tasks"]["STSBenchmark"]["spearman"], abs=1e-6)
    assert scores["sickr_spearman"] == pytest.approx(same["tasks"]["SICKRelatedness"]["spearman"], abs=1e-6)


@pytest.mark.slow
def test_short_quickstart_training_raises_stsb_dev(data_dir, embedded_model, tmp_path):
    from simcse.training.config import TrainConfig
    from simcse.training.loop import train

    config = TrainConfig.from_yaml("configs/quickstart.yaml").override(
        {
            "output_dir": str(tmp_path / "run"),
            "max_steps": 30,
            "eval_steps": 15,
            "precision": "fp32",  # the pinned numbers are fp32's; auto is bf16 on CPUs with bf16 units
            "save_steps": 0,
            "final_eval": "none",
            "progress_bar": False,
            "data_dir": str(data_dir),
        }  # fmt: skip
    )
    result = train(config)
    assert result.dev_before["stsb_spearman"] == pytest.approx(79.73, abs=0.01)
    assert result.best_metric > result.dev_before["stsb_spearman"] + 0.5
    meta = json.loads((tmp_path / "run" / "simcse.json").read_text())
    assert meta["pooler"] == "cls_before_pooler" and meta["dev"]["stsb_spearman"] == pytest.approx(
        result.best_metric
    )
    reloaded = evaluate(str(tmp_path / "run"), "STSBenchmark", mode="dev", data_dir=data_dir)
    assert reloaded["tasks"]["STSBenchmark"]["spearman"] == pytest.approx(result.best_metric, abs=1e-4)
