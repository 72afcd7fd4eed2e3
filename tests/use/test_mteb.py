"""``mteb.evaluate(SimCSE(...), task)`` offline: a small STS task whose rows are local STS-B test pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

mteb = pytest.importorskip("mteb", reason="mteb is not installed (pip install 'simcse[mteb]')")

from simcse import SimCSE  # noqa: E402
from simcse.evaluation.sts import load_sts_task  # noqa: E402

N_PAIRS = 24


def stsb_rows(data_dir: Path, n: int) -> tuple[list[str], list[str], list[float]]:
    """The first n STS-B test pairs and their scores."""
    pairs = load_sts_task("STSBenchmark", data_dir / "senteval" / "downstream").subsets["test"]
    return pairs.a[:n], pairs.b[:n], pairs.gold[:n].tolist()


def make_task(a: list[str], b: list[str], scores: list[float]):
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    class LocalSTSB(AbsTaskSTS):
        metadata = TaskMetadata(
            name="LocalSTSBSample",
            description="The first rows of STS-B test, read from SIMCSE_DATA_DIR (no hub download).",
            reference="https://ixa2.si.ehu.eus/stswiki/",
            dataset={"path": "local/stsb-sample", "revision": "local"},
            type="STS",
            category="t2t",
            modalities=["text"],
            eval_splits=["test"],
            eval_langs=["eng-Latn"],
            main_score="cosine_spearman",
            date=("2017-01-01", "2017-12-31"),
            domains=["News", "Written"],
            task_subtypes=[],
            license="cc-by-sa-4.0",
            annotations_creators="human-annotated",
            dialect=[],
            sample_creation="found",
            bibtex_citation="",
        )
        min_score = 0
        max_score = 5

        def load_data(self, num_proc: int | None = None, **kwargs) -> None:
            self.dataset = DatasetDict(
                {"test": Dataset.from_dict({"sentence1": a, "sentence2": b, "score": scores})}
            )
            self.data_loaded = True

    return LocalSTSB()


def test_mteb_evaluate_matches_scores_by_hand(embedded_model, data_dir, tmp_path, monkeypatch):
    # A real model: a tiny random BERT gives cosines within 1e-7 of each other (ties), whose ranks flip
    # with the last float bit, so two correct computations would disagree on Spearman.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MTEB_CACHE", str(tmp_path / "mteb-cache"))
    a, b, scores = stsb_rows(data_dir, N_PAIRS)
    model = SimCSE(embedded_model, device="cpu")
    assert isinstance(model, mteb.models.EncoderProtocol)
    assert model.mteb_model_meta.name == "sentence-transformers/all-MiniLM-L6-v2"

    result = mteb.evaluate(
        model, make_task(a, b, scores), cache=None, encode_kwargs={"batch_size": 8}, show_progress_bar=False
    )
    [task_result] = result.task_results
    [split] = task_result.scores["test"]

    ea, eb = model.encode(a, batch_size=8), model.encode(b, batch_size=8)
    cosine = (ea * eb).sum(axis=1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1))
    gold = np.asarray(scores) / 5.0
    assert split["cosine_spearman"] == pytest.approx(spearmanr(gold, cosine)[0], abs=1e-6)
    assert split["cosine_pearson"] == pytest.approx(pearsonr(gold, cosine)[0], abs=1e-5)
    # the model's own similarity (similarity_pairwise) is cosine as well
    assert split["spearman"] == pytest.approx(split["cosine_spearman"], abs=1e-6)
    assert split["main_score"] == split["cosine_spearman"]
    assert task_result.get_score() == pytest.approx(split["main_score"])


def test_mteb_protocol_pieces(tiny_bert):
    """What MTEB calls on the model, without running a task."""
    import torch
    from torch.utils.data import DataLoader

    model = SimCSE(str(tiny_bert), pooler="avg", device="cpu")
    texts = ["a man plays a guitar", "two dogs run", "the cat sits", "a red ball"]
    loader = DataLoader([{"text": t} for t in texts], batch_size=3)
    emb = model.encode(loader, task_metadata=None, hf_split="test", hf_subset="default", prompt_type=None,
                       batch_size=2, show_progress_bar=False, some_future_kwarg=1)  # fmt: skip
    np.testing.assert_allclose(emb, model.encode(texts), atol=1e-6)
    sim = model.similarity(emb, emb)
    assert isinstance(sim, torch.Tensor) and sim.shape == (4, 4)
    np.testing.assert_allclose(sim.diagonal().numpy(), 1.0, atol=1e-5)
    pair = model.similarity_pairwise(emb, emb[::-1].copy())
    assert pair.shape == (4,)
    np.testing.assert_allclose(pair.numpy(), sim.numpy()[np.arange(4), np.arange(3, -1, -1)], atol=1e-6)
    meta = model.mteb_model_meta
    assert meta.embed_dim == model.dim and "/" in meta.name and meta.revision == model.encoder.fingerprint()


@pytest.mark.parametrize("task_name", ["MockRetrievalTask", "MockClusteringTask", "MockClassificationTask"])
def test_mteb_task_types_beyond_sts(tiny_bert, task_name, monkeypatch, tmp_path):
    """mteb's own in-memory mock tasks: retrieval (which calls similarity on embeddings), clustering,
    classification all run on SimCSE."""
    import importlib

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MTEB_CACHE", str(tmp_path / "mteb-cache"))
    module = {"MockRetrievalTask": "retrieval", "MockClusteringTask": "clustering"}.get(
        task_name, "classification"
    )
    task = getattr(importlib.import_module(f"mteb.mocks.mock_tasks.{module}"), task_name)()
    model = SimCSE(str(tiny_bert), pooler="avg", device="cpu")
    result = mteb.evaluate(model, task, cache=None, show_progress_bar=False)
    assert not result.exceptions
    score = result.task_results[0].get_score()
    assert isinstance(score, float) and 0.0 <= score <= 1.0
