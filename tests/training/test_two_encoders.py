"""``encoders: two`` (the paper's Table 2): the anchor through one encoder, the other views through an
independent copy; both learn, only the first is saved, and a resumed run restores both."""

from __future__ import annotations

import pytest
import torch

from simcse.core.errors import ConfigError
from simcse.training.config import TrainConfig
from tests.helpers import SENTENCES, as_if_killed_before_the_final_model, train_config


def _txt(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return txt


@pytest.mark.parametrize("views", [2, 3])
def test_view_zero_goes_through_the_first_encoder_and_the_rest_through_the_second(tiny_bert, tmp_path, views):
    from simcse.training.setup import build_model

    model, _ = build_model(train_config(tiny_bert, _txt(tmp_path), tmp_path / "o", encoders="two"), views)
    first, second = model.encoder, model.second_encoder
    assert second is not None and all(a is not b for a, b in zip(first.parameters(), second.parameters()))
    with torch.no_grad():
        for p in second.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.eval()
    tokens = first.tokenizer(SENTENCES[: 2 * views], padding=True, return_tensors="pt")
    ids, mask = tokens.input_ids, tokens.attention_mask
    with torch.no_grad():
        out = model(ids, mask)[0]
        anchors = torch.arange(0, ids.shape[0], views)
        rest = torch.tensor([i for i in range(ids.shape[0]) if i % views])
        assert torch.allclose(out[anchors], first(ids[anchors], mask[anchors], with_mlp=True), atol=1e-5)
        assert torch.allclose(out[rest], second(ids[rest], mask[rest], with_mlp=True), atol=1e-5)
        assert not torch.allclose(out[rest], first(ids[rest], mask[rest], with_mlp=True), atol=1e-3)


def test_both_encoders_learn_apart_and_the_first_is_saved(tiny_bert, tmp_path, monkeypatch):
    from simcse.modeling.encoder import Encoder
    from simcse.training import loop

    kept = {}
    original = loop.finish_run

    def keep(run):
        kept["model"] = run.model
        return original(run)

    monkeypatch.setattr(loop, "finish_run", keep)
    loop.train(train_config(tiny_bert, _txt(tmp_path), tmp_path / "two", encoders="two", learning_rate=1e-3))
    model = kept["model"]
    start = Encoder.load(str(tiny_bert), pooler="cls").backbone.state_dict()
    first = model.encoder.backbone.state_dict()
    second = model.second_encoder.backbone.state_dict()
    name = "embeddings.word_embeddings.weight"
    assert not torch.equal(first[name], start[name]) and not torch.equal(second[name], start[name])
    assert not torch.equal(first[name], second[name])
    saved = Encoder.load(str(tmp_path / "two"), pooler="cls_before_pooler").backbone.state_dict()
    assert torch.allclose(saved[name], first[name])


def test_a_resumed_run_restores_the_second_encoder(tiny_bert, tmp_path):
    """Resuming from step 2 must restore the second encoder, or steps 3-4 would train from a fresh copy."""

    from safetensors.torch import load_file

    from simcse.training.loop import train

    txt = _txt(tmp_path)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"

    def config(out):
        return train_config(
            tiny_bert, txt, out, encoders="two", max_steps=4, save_steps=2, learning_rate=1e-2
        )

    for out in (whole, resumed):
        train(config(out))
    as_if_killed_before_the_final_model(resumed)
    train(config(resumed), resume=True)
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_encoders_refuse_a_shared_dropout_mask():
    with pytest.raises(ConfigError, match="encoders two encodes the views apart"):
        TrainConfig(train_file="x.txt", encoders="two", dropout_mask="shared").validate()
    with pytest.raises(ConfigError, match="encoders"):
        TrainConfig(train_file="x.txt", encoders="three").validate()
