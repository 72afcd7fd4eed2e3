"""Export: a sentence-transformers directory whose encode equals ours, a plain HF directory AutoModel loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simcse.api import SimCSE
from simcse.errors import SimCSEError
from simcse.export import export_model
from tests.helpers import SENTENCES


@pytest.mark.parametrize("pooler", ["cls", "avg", "avg_first_last"])
def test_sentence_transformers_export_encodes_like_simcse(tmp_path, tiny_bert, pooler):
    st = pytest.importorskip("sentence_transformers")
    out = export_model(str(tiny_bert), tmp_path / "st", "sentence-transformers", pooler=pooler)
    ours = SimCSE(str(tiny_bert), pooler=pooler, device="cpu").encode(SENTENCES)
    theirs = st.SentenceTransformer(str(out), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    # and simcse reads its own export back with the same pooler
    again = SimCSE(str(out), device="cpu")
    assert again.encoder.inference_pooler == pooler
    np.testing.assert_allclose(again.encode(SENTENCES), ours, atol=1e-5)


def test_hf_export_puts_the_mlp_in_the_bert_pooler(tmp_path, tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    out = export_model(str(tiny_bert), tmp_path / "hf", "hf", pooler="cls")
    assert not (out / "modules.json").exists() and not list(out.glob("*_Pooling"))
    model = AutoModel.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.inference_mode():
        pooled = model(**batch).pooler_output.numpy()
    ours = SimCSE(str(tiny_bert), pooler="cls", device="cpu").encode(SENTENCES, normalize=False)
    np.testing.assert_allclose(pooled, ours, atol=1e-5)


def test_hf_export_of_an_avg_model_keeps_the_pooler_for_simcse(tmp_path, tiny_bert):
    from transformers import AutoModel

    out = export_model(str(tiny_bert), tmp_path / "hf", "hf", pooler="avg")
    AutoModel.from_pretrained(str(out))
    reloaded = SimCSE(str(out), device="cpu")
    assert reloaded.encoder.inference_pooler == "avg"
    np.testing.assert_allclose(
        reloaded.encode(SENTENCES),
        SimCSE(str(tiny_bert), pooler="avg", device="cpu").encode(SENTENCES),
        atol=1e-5,
    )


def test_non_empty_target_is_refused_unless_overwrite(tmp_path, tiny_bert):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious", encoding="utf-8")
    with pytest.raises(SimCSEError, match="not empty; pass --overwrite"):
        export_model(str(tiny_bert), out, "hf", pooler="avg")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    export_model(str(tiny_bert), out, "hf", pooler="avg", overwrite=True)
    assert (out / "model.safetensors").is_file() and not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or .old left behind


def test_a_failed_check_writes_nothing(tmp_path, tiny_bert, monkeypatch):
    import simcse.export as export

    monkeypatch.setattr(export, "verify_export", lambda directory, to, encoder: 0.5)
    with pytest.raises(SimCSEError, match="does not reproduce the embeddings"):
        export_model(str(tiny_bert), tmp_path / "out", "hf", pooler="avg")
    assert list(tmp_path.iterdir()) == []


def test_unknown_format(tmp_path, tiny_bert):
    with pytest.raises(SimCSEError, match="unknown export format 'onnx'"):
        export_model(str(tiny_bert), tmp_path / "out", "onnx")
