"""Export: a sentence-transformers directory whose encode equals ours, a plain HF directory AutoModel loads."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

from simcse.core.errors import SimCSEError
from simcse.use.api import SimCSE
from simcse.use.export import export_model
from tests.helpers import SENTENCES


@pytest.mark.parametrize("layout", ["compatible", "current"])
@pytest.mark.parametrize("pooler", ["cls", "avg", "avg_first_last", "avg_first_last_emb"])
def test_sentence_transformers_export_encodes_like_simcse(tmp_path, tiny_bert, pooler, layout):
    st = pytest.importorskip("sentence_transformers")
    out = export_model(
        str(tiny_bert), tmp_path / "st", "sentence-transformers", pooler=pooler, st_layout=layout
    )
    ours = SimCSE(str(tiny_bert), pooler=pooler, device="cpu").encode(SENTENCES)
    loaded = st.SentenceTransformer(str(out), device="cpu")
    assert loaded.max_seq_length == SimCSE(str(tiny_bert), pooler=pooler).encoder.max_length
    theirs = loaded.encode(SENTENCES, normalize_embeddings=True)
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
    import simcse.use.export as export

    monkeypatch.setattr(export, "verify_export", lambda directory, to, encoder: 0.5)
    with pytest.raises(SimCSEError, match="does not reproduce the embeddings"):
        export_model(str(tiny_bert), tmp_path / "out", "hf", pooler="avg")
    assert list(tmp_path.iterdir()) == []


def test_unknown_format(tmp_path, tiny_bert):
    with pytest.raises(SimCSEError, match="unknown export format 'tflite'"):
        export_model(str(tiny_bert), tmp_path / "out", "tflite")


# sentence-transformers 3.0's Pooling.__init__ and Transformer.__init__ parameters (its models/Pooling.py and
# models/Transformer.py): releases before 5.4 pass a module's config.json / sentence_bert_config.json to
# these unchanged, so a key outside them is a TypeError there.
ST3_POOLING_ARGS = {
    "word_embedding_dimension", "pooling_mode", "pooling_mode_cls_token", "pooling_mode_max_tokens",
    "pooling_mode_mean_tokens", "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken", "include_prompt",
}  # fmt: skip
ST3_TRANSFORMER_CONFIG = {"max_seq_length", "do_lower_case"}
ST3_DENSE_ARGS = {"in_features", "out_features", "bias", "activation_function", "init_weight", "init_bias"}
ST3_WEIGHTED_ARGS = {"word_embedding_dimension", "num_hidden_layers", "layer_start", "layer_weights"}


@pytest.mark.parametrize("pooler", ["cls", "avg_first_last"])
def test_the_compatible_layout_uses_only_names_sentence_transformers_3_knows(tmp_path, tiny_bert, pooler):
    out = export_model(str(tiny_bert), tmp_path / "st", "sentence-transformers", pooler=pooler, verify=False)
    modules = json.loads((out / "modules.json").read_text())
    known = {"Transformer": ST3_TRANSFORMER_CONFIG, "Pooling": ST3_POOLING_ARGS, "Dense": ST3_DENSE_ARGS,
             "WeightedLayerPooling": ST3_WEIGHTED_ARGS}  # fmt: skip
    for module in modules:
        kind = module["type"].rsplit(".", 1)[1]
        assert module["type"] == f"sentence_transformers.models.{kind}"
        config = (
            out / module["path"] / ("sentence_bert_config.json" if kind == "Transformer" else "config.json")
        )
        assert set(json.loads(config.read_text())) <= known[kind], (kind, config.read_text())
    assert (
        json.loads((out / "config_sentence_transformers.json").read_text())["model_type"]
        == "SentenceTransformer"
    )


def test_the_current_layout_names_no_deprecated_path(tmp_path, tiny_bert):
    """sentence-transformers 6 lists the paths it moved (and will remove) in ``DEPRECATED_MODULE_PATHS``:
    the compatible layout's are there, the current layout's are not and import as they are."""
    st = pytest.importorskip("sentence_transformers")
    deprecated = pytest.importorskip("sentence_transformers.util.deprecated_import").DEPRECATED_MODULE_PATHS
    for layout, expect_deprecated in (("compatible", True), ("current", False)):
        out = export_model(str(tiny_bert), tmp_path / layout, "sentence-transformers", pooler="avg_first_last",
                           st_layout=layout, verify=False)  # fmt: skip
        for ref in [m["type"] for m in json.loads((out / "modules.json").read_text())]:
            module_path, name = ref.rsplit(".", 1)
            assert (module_path in deprecated or ref in deprecated) == expect_deprecated, (layout, ref)
            if not expect_deprecated:
                assert isinstance(getattr(importlib.import_module(module_path), name), type), ref
        st.SentenceTransformer(str(out), device="cpu")


def test_an_unknown_layout_is_refused(tmp_path, tiny_bert):
    with pytest.raises(SimCSEError, match="unknown sentence-transformers layout 'newest'"):
        export_model(str(tiny_bert), tmp_path / "st", "sentence-transformers", st_layout="newest")
    assert not (tmp_path / "st").exists()
