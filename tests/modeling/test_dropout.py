"""FastDropout: Bernoulli keep rate, scaling, reproducible from the global random state."""

from __future__ import annotations

import torch
from torch import nn

from simcse.modeling.dropout import FastDropout, keep_mask, use_fast_dropout


def test_keep_rate_and_scaling():
    torch.manual_seed(0)
    mask = keep_mask((1000, 1000), 0.1)
    assert abs(mask.float().mean().item() - 0.9) < 0.002
    drop = FastDropout(0.1).train()
    out = drop(torch.ones(1000, 1000))
    assert torch.allclose(out.unique(), torch.tensor([0.0, 1 / 0.9]))
    assert abs(out.mean().item() - 1.0) < 0.005
    assert torch.equal(FastDropout(0.1).eval()(out), out)


def test_masks_follow_the_global_generator_and_elements_are_independent():
    torch.manual_seed(5)
    a = keep_mask((7, 33), 0.3)
    torch.manual_seed(5)
    assert torch.equal(a, keep_mask((7, 33), 0.3))
    torch.manual_seed(1)
    big = keep_mask((400_000,), 0.5).float()
    # neighbours come from the two halves of one 64-bit draw: they must not be correlated
    assert abs(torch.corrcoef(torch.stack([big[0::2], big[1::2]]))[0, 1].item()) < 0.01


def test_replaces_only_plain_dropout_modules():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.2), nn.Sequential(nn.Dropout(0.1)))
    assert use_fast_dropout(model) == 2
    assert isinstance(model[1], FastDropout) and model[1].p == 0.2
    assert isinstance(model[2][0], FastDropout)


def test_the_training_dropout_option_sets_every_layer_and_the_saved_config(tiny_bert, tmp_path):
    """``dropout: 0`` makes the two views of unsup training identical; another rate reaches every dropout
    layer (attention included, also after the CPU fast-dropout swap) and the config the model saves."""
    from simcse.training.setup import build_model
    from tests.helpers import SENTENCES, train_config

    def embeddings_twice(p):
        model, _ = build_model(train_config(tiny_bert, tmp_path / "t.txt", tmp_path / "o", dropout=p))
        backbone = model.encoder.backbone
        use_fast_dropout(backbone)
        rates = {m.p for m in backbone.modules() if isinstance(m, (nn.Dropout, FastDropout))}
        model.train()
        from simcse.modeling.sentence_encoder import pad_batch

        tokens = model.encoder.tokenize(SENTENCES[:4], 16)
        batch = pad_batch(tokens.input_ids, tokens.pad_token_id)
        torch.manual_seed(0)
        first = model(batch["input_ids"], batch["attention_mask"])[0]
        second = model(batch["input_ids"], batch["attention_mask"])[0]
        return rates, backbone.config, first, second

    rates, config, a, b = embeddings_twice(0.0)
    assert rates == {0.0} and config.hidden_dropout_prob == 0.0 and config.attention_probs_dropout_prob == 0.0
    assert torch.equal(a, b)
    rates, config, a, b = embeddings_twice(0.3)
    assert rates == {0.3} and config.hidden_dropout_prob == 0.3
    assert not torch.allclose(a, b)
    rates, config, *_ = embeddings_twice(None)
    assert rates == {0.1}  # the checkpoint's own
