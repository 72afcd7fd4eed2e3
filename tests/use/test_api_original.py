"""``SimCSE`` as a drop-in for the original tool (princeton-nlp/SimCSE ``simcse/tool.py``, read from its
source): signatures, positional order, defaults, return types, the pooler rule, the ``.index`` dict, the
0.6 threshold, faiss on the GPU, and ``.bin``-only checkpoints loaded without running pickled code."""

from __future__ import annotations

import inspect
import shutil

import numpy as np
import pytest
import torch

from simcse import SimCSE
from simcse.core.errors import SimCSEError
from simcse.use import index as index_mod
from simcse.use.index import VectorIndex, faiss_available
from tests.helpers import SENTENCES, make_tiny_bert

# name -> default of every positional parameter of the original tool, in order
ORIGINAL = {
    "__init__": [("model_name_or_path", None), ("device", None), ("num_cells", 100), ("num_cells_in_search", 10),
                 ("pooler", None)],
    "encode": [("sentence", None), ("device", None), ("return_numpy", False), ("normalize_to_unit", True),
               ("keepdim", False), ("batch_size", 64), ("max_length", 128)],
    "similarity": [("queries", None), ("keys", None), ("device", None)],
    "build_index": [("sentences_or_file_path", None), ("use_faiss", None), ("faiss_fast", False), ("device", None),
                    ("batch_size", 64)],
    "add_to_index": [("sentences_or_file_path", None), ("device", None), ("batch_size", 64)],
    "search": [("queries", None), ("device", None), ("threshold", 0.6), ("top_k", 5)],
}  # fmt: skip
# ours defaults batch_size to the constructor's (64) and model_name_or_path to the embedded model
SAME_EFFECT = {("encode", "batch_size"), ("build_index", "batch_size"), ("add_to_index", "batch_size")}


@pytest.mark.parametrize("method", list(ORIGINAL))
def test_positional_parameters_and_defaults_are_the_original_tools(method):
    params = [
        p
        for p in inspect.signature(getattr(SimCSE, method)).parameters.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    assert [p.name for p in params] == [name for name, _ in ORIGINAL[method]]
    for p, (name, default) in zip(params, ORIGINAL[method]):
        if (method, name) in SAME_EFFECT:
            assert p.default is None  # None: the constructor's batch_size, which is 64 by default
        elif default is not None:
            assert p.default == default, (method, name)


def test_defaults_behave_as_the_original(tmp_path):
    m = SimCSE(str(make_tiny_bert(tmp_path / "m", positions=300)), device="cpu")
    assert m.batch_size == 64 and m.num_cells == 100 and m.num_cells_in_search == 10
    long = " ".join(["dog"] * 250)
    default = m.encode(long)
    assert isinstance(default, torch.Tensor)
    assert torch.allclose(default, m.encode(long, max_length=128), atol=1e-6)  # truncated at 128 tokens
    assert not torch.allclose(default, m.encode(long, max_length=None), atol=1e-4)  # the model's 300
    # a model with fewer positions than 128 is capped, not refused
    small = SimCSE(str(make_tiny_bert(tmp_path / "small", positions=64)), device="cpu")
    assert small.encode(long).shape == (small.dim,)


def test_the_original_pooler_rule_for_plain_hf_models(tmp_path):
    """The name contains 'unsup': cls_before_pooler (the original's rule); else cls."""
    base = make_tiny_bert(tmp_path / "base")
    unsup, sup = tmp_path / "unsup-simcse-tiny", tmp_path / "sup-simcse-tiny"
    shutil.copytree(base, unsup)
    shutil.copytree(base, sup)
    assert SimCSE(str(unsup), device="cpu").encoder.inference_pooler == "cls_before_pooler"
    assert SimCSE(str(sup), device="cpu").encoder.inference_pooler == "cls"  # pooler_output, as the original
    assert SimCSE(str(unsup), device="cpu", pooler="avg").encoder.inference_pooler == "avg"
    # a directory that names its pooler keeps it, whatever its name
    saved = SimCSE(str(base), device="cpu", pooler="avg").encoder.save(tmp_path / "unsup-run")
    assert SimCSE(str(saved), device="cpu").encoder.inference_pooler == "avg"


@pytest.mark.parametrize("use_faiss", [False, True])
def test_index_is_the_original_dict_and_search_keeps_scores_from_0_6(tiny_bert, use_faiss):
    if use_faiss and not faiss_available():
        pytest.skip("faiss is not installed")
    m = SimCSE(str(tiny_bert), device="cpu", pooler="avg")
    assert m.index is None and m.is_faiss_index is False
    m.build_index(SENTENCES, use_faiss=use_faiss)
    assert set(m.index) == {"sentences", "index"} and m.index["sentences"] == SENTENCES
    raw = m.index["index"]
    if use_faiss:
        assert m.is_faiss_index and raw.ntotal == len(SENTENCES)
    else:
        assert isinstance(raw, np.ndarray) and raw.shape == (len(SENTENCES), m.dim)
        np.testing.assert_allclose(raw, m.encode(SENTENCES, return_numpy=True), atol=1e-5)
    everything = m.search(SENTENCES[0], threshold=None, top_k=len(SENTENCES))
    kept = m.search(SENTENCES[0])  # threshold 0.6, top 5
    assert kept == [h for h in everything if h[1] >= 0.6][:5]
    assert m.search(SENTENCES[0], "cpu", 0.0, 2) == everything[:2]  # the original's positional order
    with pytest.raises(SimCSEError, match="device second"):
        m.search(SENTENCES[0], 3)  # a top_k where the device goes
    m.index = None
    assert m.index is None and m.sentences == []


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
def test_faiss_goes_to_the_gpu_when_the_build_has_one(monkeypatch, tmp_path):
    import faiss

    moved = []
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: "resources", raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(
        faiss, "index_cpu_to_gpu", lambda res, dev, ix: moved.append((res, dev)) or ix, raising=False
    )
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", lambda ix: moved.append("back") or ix, raising=False)
    assert index_mod.gpu_faiss_available()
    vectors = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    gpu = VectorIndex(8, "flat", use_faiss=True, gpu=True)
    gpu.add(vectors)
    assert moved == [("resources", 0)]
    gpu.save(tmp_path / "idx")
    assert moved[-1] == "back"  # written from a CPU copy
    cpu = VectorIndex(8, "flat", use_faiss=True, gpu=False)
    cpu.add(vectors)
    assert len(moved) == 2
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    assert not VectorIndex(8, "flat", use_faiss=True, gpu=True).gpu  # no GPU: the CPU index


def test_a_bin_only_checkpoint_loads_and_a_pickle_in_it_is_not_run(tmp_path):
    from transformers import BertModel

    safe = make_tiny_bert(tmp_path / "safe")
    binary = tmp_path / "sup-bin"
    shutil.copytree(safe, binary)
    (binary / "model.safetensors").unlink()
    torch.save(BertModel.from_pretrained(str(safe)).state_dict(), binary / "pytorch_model.bin")
    assert (binary / "pytorch_model.bin").exists() and not (binary / "model.safetensors").exists()
    a = SimCSE(str(safe), device="cpu").encode(SENTENCES[:3])
    b = SimCSE(str(binary), device="cpu").encode(SENTENCES[:3])
    assert torch.allclose(a, b, atol=1e-6)

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("ran",))

    torch.save({"embeddings.word_embeddings.weight": Payload()}, binary / "pytorch_model.bin")
    with pytest.raises(SimCSEError) as info:
        SimCSE(str(binary), device="cpu")
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_the_constructors_max_length_is_encodes_default(tmp_path):
    m = SimCSE(str(make_tiny_bert(tmp_path / "m", positions=300)), device="cpu", max_length=200)
    long = " ".join(["dog"] * 250)
    assert torch.allclose(m.encode(long), m.encode(long, max_length=200), atol=1e-6)
    assert not torch.allclose(m.encode(long), m.encode(long, max_length=128), atol=1e-4)  # an explicit 128
