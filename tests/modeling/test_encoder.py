"""Encoder: packed execution equals the HF forward, poolers, save/load, sentence-transformers parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, RobertaConfig, RobertaModel

from simcse.core.errors import SimCSEError
from simcse.modeling.encoder import Encoder
from simcse.modeling.packed import packed_hidden_states, supports_packing
from simcse.modeling.pooling import POOLERS, masked_mean
from simcse.modeling.sentence_encoder import pad_batch
from tests.helpers import training_encoder


def _batch(vocab: int, pad: int, lengths=(9, 4, 7, 2), start: int = 5, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(start, vocab, (n,), generator=g).tolist() for n in lengths]
    return pad_batch(seqs, pad)


def _hf_states(model, batch):
    out = model(**batch, output_hidden_states=True)
    return out.hidden_states


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_packed_forward_equals_hf_forward(kind, tiny_bert):
    if kind == "bert":
        model = AutoModel.from_pretrained(str(tiny_bert))
        pad = 0
    else:
        torch.manual_seed(0)
        model = RobertaModel(
            RobertaConfig(
                vocab_size=99,
                hidden_size=32,
                num_hidden_layers=3,
                num_attention_heads=4,
                intermediate_size=64,
                max_position_embeddings=40,
                pad_token_id=1,
            )
        )
        pad = 1
    assert supports_packing(model)
    model.eval()
    batch = _batch(model.config.vocab_size, pad)
    n = model.config.num_hidden_layers
    with torch.no_grad():
        ref = _hf_states(model, batch)
        got = packed_hidden_states(model, batch["input_ids"], batch["attention_mask"], tuple(range(n + 1)))
    mask = batch["attention_mask"].bool()
    for i in range(n + 1):
        assert torch.allclose(got[i][mask], ref[i][mask], atol=1e-5), f"layer {i}"


def test_packed_gradients_equal_hf_gradients_without_dropout(tmp_path):
    from tests.helpers import make_tiny_bert

    path = make_tiny_bert(tmp_path / "m", dropout=0.0)
    grads = []
    for packed in (True, False):
        enc = training_encoder(str(path), "avg", packed=packed)
        enc.train()
        batch = _batch(enc.backbone.config.vocab_size, 0)
        enc(batch["input_ids"], batch["attention_mask"]).pow(2).sum().backward()
        grads.append({k: p.grad.clone() for k, p in enc.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], atol=1e-5), k


# prompt needs its template around the sentence: tests/modeling/test_prompt.py
@pytest.mark.parametrize("pooler", [p for p in POOLERS if p != "prompt"])
def test_poolers_match_hidden_states(pooler, tiny_bert4):
    enc = training_encoder(str(tiny_bert4), pooler)
    enc.eval()
    batch = _batch(enc.backbone.config.vocab_size, 0)
    with torch.no_grad():
        hs = _hf_states(enc.backbone, batch)
        got = enc(batch["input_ids"], batch["attention_mask"])
    mask = batch["attention_mask"]
    expected = {
        "cls": enc.mlp(hs[-1][:, 0]) if enc.mlp is not None else None,
        "cls_before_pooler": hs[-1][:, 0],
        "avg": masked_mean(hs[-1], mask),
        "avg_top2": masked_mean((hs[-1] + hs[-2]) / 2, mask),
        "avg_first_last": masked_mean((hs[1] + hs[-1]) / 2, mask),  # first transformer layer, not embeddings
        "avg_first_last_emb": masked_mean((hs[0] + hs[-1]) / 2, mask),  # the embedding output
    }[pooler]
    assert torch.allclose(got, expected, atol=1e-5)


def test_layer_poolers_read_different_layers_on_four_layers(tiny_bert4, sentences):
    top2 = Encoder.load(str(tiny_bert4), "avg_top2").encode(sentences)
    first_last = Encoder.load(str(tiny_bert4), "avg_first_last").encode(sentences)
    assert not np.allclose(top2, first_last, atol=1e-3)


def test_mlp_only_train_uses_mlp_in_training_only(tiny_bert, sentences):
    enc = training_encoder(str(tiny_bert), "cls", mlp_only_train=True)
    batch = pad_batch(enc.tokenize(sentences[:3]).input_ids, 0)
    enc.train()
    torch.manual_seed(0)
    with_mlp = enc(**batch, with_mlp=None)
    enc.eval()
    plain = enc(**batch)
    assert torch.allclose(plain, enc(**batch, with_mlp=False))
    assert not torch.allclose(enc(**batch, with_mlp=True), plain)
    assert with_mlp.abs().max() <= 1.0  # tanh output


@pytest.mark.parametrize("text", ["", "one sentence"])
def test_encode_refuses_a_single_string_even_an_empty_one(tiny_bert, text):
    encoder = Encoder.load(str(tiny_bert))
    with pytest.raises(TypeError, match="a list of sentences, not a single string"):
        encoder.encode(text)
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_encode_is_in_input_order_and_batch_independent(tiny_bert, sentences):
    enc = Encoder.load(str(tiny_bert), "avg")
    full = enc.encode(sentences, batch_size=5)
    one = np.stack([enc.encode([s])[0] for s in sentences])
    assert full.shape == (len(sentences), enc.dim) and full.dtype == np.float32
    assert np.allclose(full, one, atol=1e-5)
    unit = enc.encode(sentences, normalize=True)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5)
    assert enc.encode([]).shape == (0, enc.dim)


@pytest.mark.parametrize(
    "pooler,mlp_only_train",
    [
        ("cls", False),
        ("cls", True),
        ("cls_before_pooler", False),
        ("avg", False),
        ("avg_top2", False),
        ("avg_first_last", False),
        ("avg_first_last_emb", False),
    ],
)
def test_saved_model_loads_in_sentence_transformers_with_equal_embeddings(
    tiny_bert4, tmp_path, sentences, pooler, mlp_only_train
):
    st = pytest.importorskip("sentence_transformers")
    enc = training_encoder(str(tiny_bert4), pooler, mlp_only_train)
    with torch.no_grad():  # make the MLP non-trivial
        if enc.mlp is not None:
            enc.mlp.dense.weight.normal_(0, 0.3)
    out = enc.save(tmp_path / "model")
    ours = enc.encode(sentences)
    theirs = st.SentenceTransformer(str(out), device="cpu").encode(sentences)
    assert np.allclose(ours, theirs, atol=1e-5)
    reloaded = Encoder.load(out)
    assert reloaded.pooler == ("cls_before_pooler" if mlp_only_train else pooler)
    assert (reloaded.mlp is not None) == (pooler == "cls" and not mlp_only_train)
    assert np.allclose(reloaded.encode(sentences), ours, atol=1e-6)
    meta = json.loads((out / "simcse.json").read_text())
    assert meta["pooler"] == reloaded.pooler and meta["mlp"] == (pooler == "cls" and not mlp_only_train)
    # with 4 layers the sentence-transformers modules alone name the pooler (simcse.json is not needed)
    (out / "simcse.json").unlink()
    assert Encoder.load(out).inference_pooler == reloaded.inference_pooler


def test_mlp_is_written_into_bert_pooler_like_released_checkpoints(tiny_bert, tmp_path, sentences):
    enc = training_encoder(str(tiny_bert), "cls")
    out = enc.save(tmp_path / "model")
    hf = AutoModel.from_pretrained(str(out))
    batch = pad_batch(enc.tokenize(sentences).input_ids, 0)
    with torch.no_grad():
        pooled = hf(**batch).pooler_output.numpy()
    assert np.allclose(pooled, enc.encode(sentences), atol=1e-5)
    # and a plain HF directory with pooler weights loads with pooler cls = pooler_output
    plain = tmp_path / "plain"
    hf.save_pretrained(str(plain))
    enc.tokenizer.save_pretrained(str(plain))
    assert np.allclose(Encoder.load(plain).encode(sentences), pooled, atol=1e-5)


def test_plain_hf_model_without_pooler_needs_explicit_pooler(tmp_path, sentences):
    from transformers import BertModel

    from tests.helpers import make_tiny_bert

    path = make_tiny_bert(tmp_path / "m")
    model = BertModel.from_pretrained(str(path), add_pooling_layer=False)
    model.save_pretrained(str(path))
    with pytest.raises(SimCSEError, match="pooler"):
        Encoder.load(path)
    assert Encoder.load(path, "avg").encode(sentences[:2]).shape == (2, 32)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(SimCSEError, match="not found"):
        Encoder.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SimCSEError, match="config.json"):
        Encoder.load(tmp_path / "empty")
    with pytest.raises(SimCSEError, match="unknown pooler"):
        Encoder.load(tmp_path / "empty", "max")


def test_embedded_default_model_matches_sentence_transformers(embedded_model, sentences):
    st = pytest.importorskip("sentence_transformers")
    enc = Encoder.load(None)
    assert enc.pooler == "avg" and enc.max_length == 256
    theirs = st.SentenceTransformer(str(embedded_model), device="cpu").encode(sentences)
    assert np.allclose(enc.encode(sentences, normalize=True), theirs, atol=1e-5)


def test_mlp_only_train_keeps_the_trained_mlp_in_the_bert_pooler(tiny_bert4, tmp_path, sentences):
    """As the original's converter: the trained MLP, not the pretrained NSP pooler, is pooler.dense; the
    embedding stays cls_before_pooler, and --pooler cls evaluates with the trained MLP."""
    pretrained = load_file(str(tiny_bert4 / "model.safetensors"))["pooler.dense.weight"]
    enc = training_encoder(str(tiny_bert4), "cls", mlp_only_train=True)
    with torch.no_grad():
        enc.mlp.dense.weight.normal_(0, 0.3)
        enc.mlp.dense.bias.normal_(0, 0.1)
    out = enc.save(tmp_path / "model")
    saved = load_file(str(out / "model.safetensors"))
    assert torch.equal(saved["pooler.dense.weight"], enc.mlp.dense.weight.detach())
    assert torch.equal(saved["pooler.dense.bias"], enc.mlp.dense.bias.detach())
    assert not torch.allclose(saved["pooler.dense.weight"], pretrained)
    assert Encoder.load(out).inference_pooler == "cls_before_pooler"
    enc.eval()
    batch = pad_batch(enc.tokenize(sentences).input_ids, 0)
    with torch.no_grad():
        expected = enc(**batch, with_mlp=True).numpy()
        pooled = AutoModel.from_pretrained(str(out))(**batch).pooler_output.numpy()
    with_mlp = Encoder.load(out, pooler="cls").encode(sentences)
    assert np.allclose(with_mlp, expected, atol=1e-5) and np.allclose(pooled, expected, atol=1e-5)
    # saved again without the MLP (loaded as cls_before_pooler), the trained MLP stays in the pooler
    again = Encoder.load(out).save(tmp_path / "again")
    assert torch.equal(
        load_file(str(again / "model.safetensors"))["pooler.dense.weight"], saved["pooler.dense.weight"]
    )
