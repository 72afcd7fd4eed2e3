"""S-SimCSE (``dropout_range``): the anchors and the positives are two passes, each under its own dropout
rate drawn uniformly from the range under the seed; evaluation and the saved config are unaffected."""

from __future__ import annotations

import json

import pytest
import torch

from simcse.core.errors import ConfigError
from simcse.modeling.dropout import FastDropout
from simcse.training.config import TrainConfig
from tests.helpers import SENTENCES, train_config


def _txt(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return txt


def test_each_pass_draws_its_own_rate_from_the_range(tiny_bert, tmp_path):
    from simcse.training.setup import build_model

    model, _ = build_model(train_config(tiny_bert, _txt(tmp_path), tmp_path / "o", dropout_range="0.1,0.3"))
    rates, sizes = [], []
    layer = next(
        m for m in model.encoder.backbone.modules() if isinstance(m, (torch.nn.Dropout, FastDropout))
    )

    def record(module, args):
        rates.append(layer.p)
        sizes.append(args[0].shape[0])

    model.encoder.register_forward_pre_hook(record)
    tokens = model.encoder.tokenizer(
        [s for s in SENTENCES[:4] for _ in range(2)], padding=True, return_tensors="pt"
    )
    model.train()
    torch.manual_seed(7)
    model(tokens.input_ids, tokens.attention_mask)
    torch.manual_seed(7)
    expected = [0.1 + 0.2 * float(torch.rand(())) for _ in range(2)]
    assert len(rates) == 2 and sizes == [4, 4]  # the anchors, then the positives
    assert rates[0] == pytest.approx(expected[0]) and rates[1] != pytest.approx(rates[0])
    assert all(0.1 <= r < 0.3 for r in rates)
    assert model.encoder.backbone.config.hidden_dropout_prob == 0.1  # the checkpoint's, not a sample
    rates.clear()
    model.eval()
    with torch.no_grad():
        first = model(tokens.input_ids, tokens.attention_mask)[0]
        again = model(tokens.input_ids, tokens.attention_mask)[0]
    assert torch.equal(first, again)  # no dropout at evaluation


def test_training_keeps_the_checkpoints_rate_in_the_saved_config(tiny_bert, tmp_path):
    from simcse.training.loop import train

    out = tmp_path / "run"
    assert train(train_config(tiny_bert, _txt(tmp_path), out, dropout_range="0.05,0.25")).global_step == 4
    saved = json.loads((out / "config.json").read_text())
    start = json.loads((tiny_bert / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == start["hidden_dropout_prob"]


@pytest.mark.parametrize("value, words", [("0.3", "expected LOW,HIGH"), ("0.3,0.1", "0 <= LOW <= HIGH < 1"),
                                          ("a,b", "expected LOW,HIGH"), ("0.1,1.0", "0 <= LOW <= HIGH < 1")])  # fmt: skip
def test_bad_ranges_and_combinations_are_refused(value, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(train_file="x.txt", dropout_range=value).validate()
    with pytest.raises(ConfigError, match="dropout_range draws the rates itself"):
        TrainConfig(train_file="x.txt", dropout_range="0.1,0.2", dropout=0.1).validate()
