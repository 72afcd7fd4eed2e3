"""GradCache: same gradients as one pass with the same dropout masks, with a fraction of the activations."""

from __future__ import annotations

import contextlib
import weakref

import pytest
import torch

from simcse.training.data import Collator
from simcse.training.losses import ContrastiveLoss
from simcse.training.model import SimCSEModel
from simcse.training.steps import _chunks, gradcache_step
from tests.helpers import make_tiny_bert, training_encoder

ROWS = ["a man is playing a guitar", "two dogs run in the park", "the children eat food", "a boy plays",
        "a cat is sitting under the tree", "young women ride bikes near the water", "he said no",
        "three birds sit on the road", "people walk on the street", "a red car", "the old man thought",
        "a group of players play music"]  # fmt: skip


def _setup(path, dropout=True):
    torch.manual_seed(0)
    model = SimCSEModel(training_encoder(str(path), "cls"))
    model.train()
    batch = Collator(model.encoder.tokenizer, 16, views=2)([(s,) for s in ROWS])
    return model, batch


def _grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _run_gradcache(model, batch, chunk):
    loss_fn = ContrastiveLoss(0.05)
    torch.manual_seed(123)
    loss, _ = gradcache_step(
        model, batch, 2, chunk, loss_fn, {"mlm": 0.1}, torch.device("cpu"), contextlib.nullcontext()
    )
    return loss, _grads(model)


@pytest.fixture(scope="module")
def bert_dropout(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("gc"), dropout=0.1)


@pytest.fixture(scope="module")
def bert_no_dropout(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("gc0"), dropout=0.0)


def _assert_gradcache_equals_one_pass(model, batch) -> None:
    loss_gc, grads_gc = _run_gradcache(model, batch, chunk=3)
    model.zero_grad(set_to_none=True)
    # reference: the same chunks forwarded WITH autograd, in the same random order, then one loss
    torch.manual_seed(123)
    embs = [model(c["input_ids"], c["attention_mask"])[0] for c in _chunks(batch, 2, 3)]
    loss_ref = ContrastiveLoss(0.05)(torch.cat(embs).view(-1, 2, embs[0].shape[-1]))
    loss_ref.backward()
    assert torch.allclose(loss_gc, loss_ref, atol=1e-6)
    for k, g in _grads(model).items():
        assert torch.allclose(grads_gc[k], g, atol=1e-5), k


def test_gradcache_replays_dropout_masks(bert_dropout):
    model, batch = _setup(bert_dropout)
    _assert_gradcache_equals_one_pass(model, batch)
    # and the global random state ends where one pass would leave it
    after_gc = torch.rand(1)
    torch.manual_seed(123)
    [model(c["input_ids"], c["attention_mask"]) for c in _chunks(batch, 2, 3)]
    assert torch.equal(after_gc, torch.rand(1))


def test_gradcache_equals_full_batch_without_dropout(bert_no_dropout):
    model, batch = _setup(bert_no_dropout)
    _, grads_gc = _run_gradcache(model, batch, chunk=4)
    model.zero_grad(set_to_none=True)
    emb = model(batch["input_ids"], batch["attention_mask"])[0]
    ContrastiveLoss(0.05)(emb.view(-1, 2, emb.shape[-1])).backward()
    for k, g in _grads(model).items():
        assert torch.allclose(grads_gc[k], g, atol=1e-5), k


class _Saved:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor):
        self.tensor = tensor


def _peak_saved_bytes(fn) -> int:
    """Peak bytes of activations held for backward while ``fn`` runs (freed ones are subtracted)."""
    live, peak = [0], [0]

    def release(size):
        live[0] -= size

    def pack(t):
        size = t.numel() * t.element_size()
        live[0] += size
        peak[0] = max(peak[0], live[0])
        box = _Saved(t)
        weakref.finalize(box, release, size)
        return box

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda box: box.tensor):
        fn()
    return peak[0]


def test_gradcache_holds_activations_for_one_chunk_only(bert_dropout):
    model, batch = _setup(bert_dropout)
    full = _peak_saved_bytes(
        lambda: ContrastiveLoss()(
            model(batch["input_ids"], batch["attention_mask"])[0].view(12, 2, -1)
        ).backward()
    )
    model.zero_grad(set_to_none=True)
    chunked = _peak_saved_bytes(lambda: _run_gradcache(model, batch, chunk=2))
    # activations of 2 rows instead of 12 (plus the cached embeddings, which are tiny)
    assert chunked < full / 3


def test_gradcache_replays_fast_dropout_too(bert_dropout):
    from simcse.modeling.dropout import use_fast_dropout

    model, batch = _setup(bert_dropout)
    assert use_fast_dropout(model.encoder.backbone) > 0
    _, grads_gc = _run_gradcache(model, batch, chunk=5)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    embs = [model(c["input_ids"], c["attention_mask"])[0] for c in _chunks(batch, 2, 5)]
    ContrastiveLoss(0.05)(torch.cat(embs).view(-1, 2, embs[0].shape[-1])).backward()
    for k, g in _grads(model).items():
        assert torch.allclose(grads_gc[k], g, atol=1e-5), k


def test_gradcache_replays_sampled_dropout_rates_too(bert_dropout):
    """S-SimCSE's per-pass rates are drawn from the global generator inside the forward: the replay draws
    the same rates, so GradCache still equals one autograd pass over the same chunks."""
    model, batch = _setup(bert_dropout)
    from simcse.training.methods.s_simcse import SampledDropout

    model.separate_anchor, model.pass_hooks = True, [SampledDropout(0.05, 0.4)]
    _assert_gradcache_equals_one_pass(model, batch)


def test_gradcache_replays_exactly_under_bf16_autocast_with_fast_dropout_and_packing(bert_dropout):
    """precision auto picks bf16 autocast on CPUs with bf16 units: each chunk's replay (with gradient) must
    give bit for bit the embeddings of its first pass (the same masks, the same bf16 rounding), and the
    gradient must equal one pass's under the same autocast, up to bf16 rounding in the backward (the chunks'
    gradients are summed in another order)."""
    from simcse.modeling.dropout import use_fast_dropout

    model, batch = _setup(bert_dropout)
    assert use_fast_dropout(model.encoder.backbone) > 0 and model.encoder.packed
    outputs = []
    real_forward = model.forward

    def recording(*args, **kwargs):
        result = real_forward(*args, **kwargs)
        outputs.append(result[0].detach().clone())
        return result

    model.forward = recording
    torch.manual_seed(123)
    cast = torch.autocast("cpu", dtype=torch.bfloat16)
    gradcache_step(model, batch, 2, 4, ContrastiveLoss(0.05), {}, torch.device("cpu"), cast)
    model.forward = real_forward
    grads_gc = _grads(model)
    chunks = len(outputs) // 2
    assert chunks == 3 and outputs[0].dtype == torch.bfloat16  # the encoder really ran in bf16
    for first, replay in zip(outputs[:chunks], outputs[chunks:]):
        assert torch.equal(first, replay)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embs = [model(c["input_ids"], c["attention_mask"])[0] for c in _chunks(batch, 2, 4)]
    ContrastiveLoss(0.05)(torch.cat(embs).float().view(-1, 2, embs[0].shape[-1])).backward()
    for k, g in _grads(model).items():
        assert (grads_gc[k] - g).norm() <= 1e-2 * g.norm() + 1e-6, k
