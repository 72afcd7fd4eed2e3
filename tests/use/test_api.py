"""The Python API: SimCSE.encode / similarity / build_index / add_to_index / search / save_index / load_index."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from simcse import SimCSE
from simcse.core.errors import SimCSEError
from simcse.use import api_index
from simcse.use.index import faiss_available
from tests.helpers import SENTENCES, make_tiny_bert


@pytest.fixture(scope="module")
def model(tiny_bert) -> SimCSE:
    m = SimCSE(str(tiny_bert), pooler="avg", device="cpu")
    assert len(set(map(tuple, m.encoder.tokenize(SENTENCES).input_ids))) == len(SENTENCES)
    return m


# ---------------------------------------------------------------------------------------- encode
def test_encode_returns_a_cpu_tensor_as_the_original_tool(model):
    one = model.encode(SENTENCES[0])
    assert isinstance(one, torch.Tensor) and one.shape == (model.dim,) and one.dtype == torch.float32
    assert one.device.type == "cpu"
    assert model.encode(SENTENCES[0], keepdim=True).shape == (1, model.dim)
    many = model.encode(SENTENCES, return_numpy=True)
    assert (
        isinstance(many, np.ndarray)
        and many.shape == (len(SENTENCES), model.dim)
        and many.dtype == np.float32
    )
    assert model.encode([], return_numpy=True).shape == (0, model.dim)
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)
    # the original's positional order: (sentence, device, return_numpy, normalize_to_unit, keepdim, ...)
    positional = model.encode(SENTENCES[:2], "cpu", True, False, False, 1, 32)
    np.testing.assert_allclose(positional, model.encode(SENTENCES[:2], return_numpy=True, normalize_to_unit=False),
                               atol=1e-6)  # fmt: skip


def test_encode_keeps_input_order_across_length_sorted_batches(model):
    texts = SENTENCES + ["a", "the old man said no to the young women near the water in the city park"]
    together = model.encode(texts, batch_size=3, output="numpy")
    alone = np.stack([model.encode(t, output="numpy") for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(
        model.encode(texts[::-1], batch_size=5, output="numpy"), together[::-1], atol=1e-5
    )


def test_encode_outputs_and_the_original_tool_flags(model):
    ref = model.encode(SENTENCES[:3], output="numpy")
    for kwargs in (
        {},
        {"output": "torch"},
        {"return": "torch"},
        {"return_numpy": False},
        {"convert_to_tensor": True},
    ):
        out = model.encode(SENTENCES[:3], **kwargs)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32, kwargs
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)
    assert isinstance(model.encode(SENTENCES[:3], return_numpy=True), np.ndarray)
    assert isinstance(model.encode(SENTENCES[:3], convert_to_numpy=True), np.ndarray)
    assert isinstance(model.encode(SENTENCES[0], **{"return": "numpy"}), np.ndarray)
    raw = model.encode(SENTENCES[:3], normalize=False, output="numpy")
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(
        model.encode(SENTENCES[:3], normalize_to_unit=False, output="numpy"), raw, atol=1e-6
    )
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), ref, atol=1e-5)
    with pytest.raises(SimCSEError, match="output"):
        model.encode("x", output="list")
    with pytest.raises(TypeError, match="unexpected keyword"):
        model.encode("x", normalise=True)
    with pytest.raises(SimCSEError, match="list of strings"):
        model.encode(["x", 3])
    with pytest.raises(SimCSEError, match="batch_size"):
        model.encode("x", batch_size=0)


def test_bf16_encoding_stays_close_to_fp32(model):
    fp32 = model.encode(SENTENCES, output="numpy")
    for kwargs in ({"bf16": True}, {"dtype": torch.bfloat16}):
        bf16 = model.encode(SENTENCES, output="numpy", **kwargs)
        assert bf16.dtype == np.float32
        assert np.min(np.sum(bf16 * fp32, axis=1)) > 0.99
        assert not np.array_equal(bf16, fp32)  # it really ran in bf16


def test_encoder_instance_and_sentence_transformers_directory(model, tmp_path):
    saved = model.encoder.save(tmp_path / "saved")
    again = SimCSE(str(saved), device="cpu")
    np.testing.assert_allclose(again.encode(SENTENCES).numpy(), model.encode(SENTENCES).numpy(), atol=1e-5)
    assert SimCSE(model.encoder).encoder is model.encoder


# ---------------------------------------------------------------------------------------- similarity
def test_similarity_shapes_follow_the_original_tool(model):
    e = model.encode(SENTENCES, return_numpy=True)
    s = model.similarity(SENTENCES[0], SENTENCES[1])
    assert isinstance(s, float) and s == pytest.approx(float(e[0] @ e[1]), abs=1e-5)
    row = model.similarity(SENTENCES[0], SENTENCES)
    assert row.shape == (len(SENTENCES),)
    np.testing.assert_allclose(row, e @ e[0], atol=1e-5)
    assert model.similarity(SENTENCES[:3], SENTENCES[4]).shape == (3, 1)  # as the original: not squeezed
    matrix = model.similarity(SENTENCES[:3], SENTENCES[3:])
    assert isinstance(matrix, np.ndarray) and matrix.shape == (3, len(SENTENCES) - 3)
    np.testing.assert_allclose(matrix, e[:3] @ e[3:].T, atol=1e-5)
    # keys as (unnormalised) embeddings, as the original accepts
    np.testing.assert_allclose(model.similarity(SENTENCES[:3], 7.0 * e[3:]), matrix, atol=1e-5)
    # two arrays: sentence-transformers' / MTEB's similarity, a torch matrix
    both = model.similarity(e[:3], e[3:])
    assert isinstance(both, torch.Tensor)
    np.testing.assert_allclose(both.numpy(), matrix, atol=1e-5)
    np.testing.assert_allclose(
        model.similarity_pairwise(e[:3], e[3:6]).numpy(), np.sum(e[:3] * e[3:6], axis=1), atol=1e-5
    )


# ---------------------------------------------------------------------------------------- index
@pytest.mark.parametrize("use_faiss", [False, True])
def test_build_add_search_threshold(tiny_bert, use_faiss):
    if use_faiss and not faiss_available():
        pytest.skip("faiss is not installed")
    m = SimCSE(str(tiny_bert), pooler="avg", device="cpu")
    with pytest.raises(SimCSEError, match="no index"):
        m.search("x")
    m.build_index(SENTENCES[:8], use_faiss=use_faiss)
    assert m.is_faiss_index is use_faiss and len(m.vector_index) == 8
    hits = m.search(SENTENCES[2], top_k=3, threshold=None)
    assert len(hits) == 3 and hits[0][0] == SENTENCES[2] and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert all(isinstance(s, str) and isinstance(v, float) for s, v in hits)
    assert [v for _, v in hits] == sorted((v for _, v in hits), reverse=True)
    expected = sorted(model_scores(m, SENTENCES[2], SENTENCES[:8]), reverse=True)[:3]
    np.testing.assert_allclose([v for _, v in hits], expected, atol=1e-5)

    m.add_to_index(SENTENCES[8:])
    assert len(m.vector_index) == len(m.sentences) == len(SENTENCES)
    batch = m.search([SENTENCES[10], SENTENCES[0]], top_k=2, threshold=None)
    assert [b[0][0] for b in batch] == [SENTENCES[10], SENTENCES[0]] and all(len(b) == 2 for b in batch)
    assert m.search([]) == []
    assert len(m.search(SENTENCES[0], top_k=100, threshold=None)) == len(SENTENCES)
    ranked = sorted(model_scores(m, SENTENCES[0], SENTENCES), reverse=True)
    cut = (ranked[4] + ranked[5]) / 2  # between the 5th and 6th best (scores differ by float rounding)
    kept = m.search(SENTENCES[0], top_k=100, threshold=cut)
    assert len(kept) == 5 and all(v >= cut for _, v in kept)
    assert len(m.search(SENTENCES[0], top_k=3, threshold=cut)) == 3
    assert m.search(SENTENCES[0], threshold=1.01) == []
    with pytest.raises(SimCSEError, match="top_k"):
        m.search("x", top_k=0)


def model_scores(m: SimCSE, query: str, keys: list[str]) -> list[float]:
    return list(m.similarity(query, keys))


def test_build_index_from_file_and_bad_inputs(model, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(SENTENCES[:5]) + "\n\n", encoding="utf-8")
    model.build_index(str(path), use_faiss=False)
    assert model.sentences == SENTENCES[:5]
    model.add_to_index(path)  # a Path works too
    assert len(model.vector_index) == 10
    with pytest.raises(SimCSEError, match="file not found"):
        model.build_index(str(tmp_path / "missing.txt"))
    with pytest.raises(SimCSEError, match="empty"):
        model.build_index([])
    with pytest.raises(SimCSEError, match="index kind"):
        model.build_index(SENTENCES, index="annoy")
    assert len(model.vector_index) == 10  # a failed build keeps the previous index


def test_use_faiss_without_faiss_falls_back_with_a_warning(model, monkeypatch, caplog):
    monkeypatch.setattr(api_index, "faiss_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="simcse.use.api"):
        model.build_index(SENTENCES, use_faiss=True)
    assert not model.is_faiss_index and "faiss is not installed" in caplog.text
    assert model.search(SENTENCES[3], top_k=1)[0][0] == SENTENCES[3]


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
def test_faiss_fast_is_ivf_with_num_cells(tiny_bert):
    m = SimCSE(str(tiny_bert), pooler="avg", device="cpu", num_cells=3, num_cells_in_search=3)
    m.build_index(SENTENCES, faiss_fast=True)
    assert (
        m.vector_index.resolved_kind == "ivf" and m.index["index"].nlist == 3 and m.index["index"].nprobe == 3
    )
    assert m.search(SENTENCES[5], top_k=1)[0][0] == SENTENCES[5]  # all lists probed: exact


# ---------------------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("use_faiss", [False, True])
def test_save_index_then_load_in_a_fresh_instance(tiny_bert, tmp_path, use_faiss):
    if use_faiss and not faiss_available():
        pytest.skip("faiss is not installed")
    m = SimCSE(str(tiny_bert), pooler="avg", device="cpu")
    m.build_index(SENTENCES + ["naïve café « quoted »\tand a tab"], use_faiss=use_faiss)
    queries = ["a man plays music", "dogs in a park", "naïve café"]
    before = m.search(queries, top_k=4, threshold=None)
    m.save_index(tmp_path / "idx")
    fresh = SimCSE(str(tiny_bert), pooler="avg", device="cpu").load_index(tmp_path / "idx")
    assert fresh.sentences == m.sentences and fresh.is_faiss_index is use_faiss
    assert fresh.search(queries, top_k=4, threshold=None) == before
    assert not list((tmp_path / "idx").glob("*tmp*"))


def test_load_index_built_by_another_model_is_refused(model, tmp_path):
    model.build_index(SENTENCES, use_faiss=False)
    model.save_index(tmp_path / "idx")
    other = SimCSE(str(make_tiny_bert(tmp_path / "other", seed=1)), pooler="avg", device="cpu")
    assert other.dim == model.dim
    with pytest.raises(SimCSEError, match="built with another model"):
        other.load_index(tmp_path / "idx")
    assert other.index is None
    other.load_index(tmp_path / "idx", check_model=False)  # on the user's word
    assert len(other.vector_index) == len(SENTENCES)
    wider = SimCSE(str(make_tiny_bert(tmp_path / "wider", hidden=48)), pooler="avg", device="cpu")
    with pytest.raises(SimCSEError, match="48 dims"):
        wider.load_index(tmp_path / "idx")
    same_weights_other_pooler = SimCSE(model.encoder.source, pooler="cls_before_pooler", device="cpu")
    with pytest.raises(SimCSEError, match="another model"):
        same_weights_other_pooler.load_index(tmp_path / "idx")


def test_fingerprint_is_cached_until_the_weights_change(tiny_bert):
    m = SimCSE(str(tiny_bert), pooler="avg", device="cpu")
    first = m.fingerprint()
    assert first == m.encoder.fingerprint() and m.fingerprint() == first
    with torch.no_grad():
        next(m.encoder.parameters()).add_(0.5)  # in place: same tensor, new version
    assert m.fingerprint() != first and m.fingerprint() == m.encoder.fingerprint()


def test_broken_index_directories_give_one_line_errors(model, tmp_path):
    model.build_index(SENTENCES, use_faiss=False)
    idx = model.save_index(tmp_path / "idx")

    def fails(match: str):
        with pytest.raises(SimCSEError, match=match) as e:
            SimCSE(model.encoder).load_index(idx)
        assert "\n" not in str(e.value)

    lines = (idx / "sentences.jsonl").read_text(encoding="utf-8").splitlines()
    (idx / "sentences.jsonl").write_text(
        "\n".join(lines[:3] + ["{broken"] + lines[4:]) + "\n", encoding="utf-8"
    )
    fails(r"sentences.jsonl:4: not a JSON string")
    (idx / "sentences.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    fails(f"{len(SENTENCES) - 1} sentences but {len(SENTENCES)} vectors")
    (idx / "sentences.jsonl").unlink()
    fails("sentences.jsonl: not found")
    (idx / "model.json").write_text("[1, 2", encoding="utf-8")
    fails("model.json: cannot read")
    (idx / "model.json").unlink()
    fails("model.json: not found")
    with pytest.raises(SimCSEError, match="not found or not a directory"):
        model.load_index(tmp_path / "nowhere")
    with pytest.raises(SimCSEError, match="no index to save"):
        SimCSE(model.encoder).save_index(tmp_path / "x")


def test_failed_save_index_keeps_the_previous_index(tiny_bert, tmp_path, monkeypatch):
    m = SimCSE(str(tiny_bert), pooler="avg", device="cpu")
    m.build_index(SENTENCES[:4], use_faiss=False)
    m.save_index(tmp_path / "idx")
    m.build_index(SENTENCES, use_faiss=False)

    write_text = Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.name == "model.json.tmp":  # the last file: the vectors and sentences are written by then
            raise OSError(28, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(SimCSEError, match="cannot save the index"):
        m.save_index(tmp_path / "idx")
    monkeypatch.undo()
    assert not list((tmp_path / "idx").glob("*tmp*"))
    fresh = SimCSE(str(tiny_bert), pooler="avg", device="cpu").load_index(tmp_path / "idx")
    assert fresh.sentences == SENTENCES[:4]
    meta = json.loads((tmp_path / "idx" / "index.json").read_text(encoding="utf-8"))
    assert meta["size"] == 4
