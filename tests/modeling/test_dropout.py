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
