"""The SimCSE follow-ups built from pieces of the same loop: ESimCSE (word repetition, momentum queue),
SimCSE++ (off-dropout negatives, the dimension-wise term), false-negative filtering with a guide model, and
Contrastive Tension's binary objective. Each piece's mechanics on tiny models, then a training smoke run."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from simcse.core.errors import ConfigError, DataError
from simcse.training.config import TrainConfig
from simcse.training.losses import ContrastiveLoss, DimensionContrast, OffDropoutLoss
from simcse.training.methods.esimcse import WordRepetition, repeat_subwords
from tests.helpers import SENTENCES, train_config

SPECIAL = frozenset({101, 102})


def _txt(tmp_path, lines=SENTENCES):
    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return txt


# ------------------------------------------------------------------------------------ ESimCSE: repetition
def _undo(repeated: list[int], original: list[int]) -> list[int] | None:
    """The positions of ``original`` written twice in ``repeated`` (None if it is not such a repetition)."""
    doubled, i, j = [], 0, 0
    while i < len(original):
        if j >= len(repeated) or repeated[j] != original[i]:
            return None
        if (
            j + 1 < len(repeated)
            and repeated[j + 1] == original[i]
            and (
                i + 1 >= len(original)
                or original[i + 1] != original[i]
                or len(repeated) - j > len(original) - i
            )
        ):
            doubled.append(i)
            j += 2
        else:
            j += 1
        i += 1
    return doubled if j == len(repeated) else None


def test_word_repetition_doubles_up_to_the_papers_count_of_distinct_non_special_subwords():
    ids = [101, *range(1000, 1020), 102]  # 20 distinct subwords
    counts = []
    for row in range(400):
        out = repeat_subwords(ids, 0.32, np.random.default_rng([1, 0, row]), SPECIAL)
        doubled = _undo(out, ids)
        assert doubled is not None, out
        assert out[0] == 101 and out[-1] == 102 and out.count(101) == 1 and out.count(102) == 1
        counts.append(len(doubled))
        assert len(out) == len(ids) + len(doubled)
    # dup_len ~ U{0, ..., max(2, int(0.32 * 20)) = 6}
    assert min(counts) == 0 and max(counts) == 6 and abs(np.mean(counts) - 3.0) < 0.3
    again = repeat_subwords(ids, 0.32, np.random.default_rng([1, 0, 5]), SPECIAL)
    assert again == repeat_subwords(ids, 0.32, np.random.default_rng([1, 0, 5]), SPECIAL)  # seeded
    short = [101, 7, 102]  # one subword: max(2, 0) = 2 caps at the one there is
    assert {len(repeat_subwords(short, 0.32, np.random.default_rng(r), SPECIAL)) for r in range(50)} == {3, 4}
    assert repeat_subwords([101, 102], 0.32, np.random.default_rng(0), SPECIAL) == [101, 102]


def test_collator_repeats_only_the_positive_view_the_same_way_in_every_epoch_call(tiny_bert):
    from simcse.modeling.encoder import Encoder
    from simcse.training.data import Collator

    tokenizer = Encoder.load(tiny_bert, "avg").tokenizer
    collate = Collator(
        tokenizer, 32, 2, seed=3, pieces=[WordRepetition(0.5, 3, frozenset(tokenizer.all_special_ids))]
    )
    rows = [(s,) for s in SENTENCES[:6]]
    batch = collate(rows, epoch=0, row_ids=list(range(6)))
    plain = Collator(tokenizer, 32, 2)(rows)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert torch.equal(ids[0::2][:, : plain["input_ids"].shape[1]], plain["input_ids"][0::2])  # anchors as-is
    grew = 0
    for r in range(6):
        anchor = ids[2 * r][mask[2 * r].bool()].tolist()
        positive = ids[2 * r + 1][mask[2 * r + 1].bool()].tolist()
        assert _undo(positive, anchor) is not None
        grew += len(positive) > len(anchor)
    assert grew >= 1
    assert torch.equal(collate(rows, epoch=0, row_ids=list(range(6)))["input_ids"], ids)
    assert not torch.equal(collate(rows, epoch=1, row_ids=list(range(6)))["input_ids"], ids)


# -------------------------------------------------------------------------------- ESimCSE: momentum queue
def test_momentum_queue_moves_by_ema_enqueues_anchors_after_the_loss_and_drops_the_oldest(tiny_bert):
    from simcse.modeling.encoder import Encoder
    from simcse.training.negatives import MomentumQueue

    live = Encoder.load(tiny_bert, "cls")
    queue = MomentumQueue(live, size=5, momentum=0.9, views=2)
    queue.train()
    assert not queue.copy.training and not any(p.requires_grad for p in queue.copy.parameters())
    with torch.no_grad():
        for p in live.backbone.parameters():
            p.add_(0.5)
    before = [p.clone() for p in queue.copy.backbone.parameters()]
    tok = live.tokenizer([s for s in SENTENCES[:3] for _ in range(2)], padding=True, return_tensors="pt")
    batch = {"input_ids": tok.input_ids, "attention_mask": tok.attention_mask}
    queue.before_step(batch)
    for old, new, theirs in zip(before, queue.copy.backbone.parameters(), live.backbone.parameters()):
        assert torch.allclose(new, 0.9 * old + 0.1 * theirs, atol=1e-6)
    assert queue(torch.zeros(1, 2, live.dim)).shape[0] == 0  # this step's anchors are not negatives yet
    queue.after_step()
    live.eval()
    expected = queue.copy(tok.input_ids[::2], tok.attention_mask[::2], with_mlp=True)
    assert int(queue.filled) == 3 and torch.allclose(queue.queue[:3], expected, atol=1e-5)
    tok2 = live.tokenizer([s for s in SENTENCES[3:6] for _ in range(2)], padding=True, return_tensors="pt")
    queue.before_step({"input_ids": tok2.input_ids, "attention_mask": tok2.attention_mask})
    queue.after_step()
    newest = queue.copy(tok2.input_ids[::2], tok2.attention_mask[::2], with_mlp=True)
    assert int(queue.filled) == 5  # size 5: the oldest of the first three left
    assert torch.allclose(queue.queue[:2], expected[1:], atol=1e-5)
    assert torch.allclose(queue.queue[2:5], newest, atol=1e-5)
    z = torch.randn(4, 2, live.dim)
    with_queue = ContrastiveLoss(0.05, sources=[queue])(z)
    assert torch.allclose(with_queue, ContrastiveLoss(0.05)(z, extra=queue.queue[:5]))


def test_queue_training_resumes_exactly_with_the_queue_restored(tiny_bert, tmp_path):
    from simcse.training.loop import train

    txt = _txt(tmp_path, SENTENCES * 2)
    values = dict(queue_size=6, save_steps=2, save_total_limit=3, learning_rate=1e-3, word_repetition=0.3)
    train(train_config(tiny_bert, txt, tmp_path / "a", **values))
    reference = load_file(str(tmp_path / "a" / "model.safetensors"))
    checkpoint = load_file(str(tmp_path / "a" / "checkpoints" / "step-00000002" / "model.safetensors"))
    assert int(checkpoint["momentum.filled"]) == 6 and checkpoint["momentum.queue"].abs().sum() > 0
    assert not any(k.startswith("momentum.copy") and k in reference for k in checkpoint)
    (tmp_path / "b").mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoints", tmp_path / "b" / "checkpoints")
    shutil.copy(tmp_path / "a" / "train_config.yaml", tmp_path / "b" / "train_config.yaml")
    result = train(train_config(tiny_bert, txt, tmp_path / "b", **values), resume=True)
    assert result.global_step == 4
    resumed = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    # the queue matters: without it the same steps end elsewhere
    train(train_config(tiny_bert, txt, tmp_path / "c", **{**values, "queue_size": 0}))
    other = load_file(str(tmp_path / "c" / "model.safetensors"))
    assert not all(torch.equal(reference[k], other[k]) for k in reference)


# ----------------------------------------------------------------------------------------------- SimCSE++
def test_off_dropout_loss_contrasts_plain_embeddings_with_each_other_and_keeps_the_positive():
    torch.manual_seed(0)
    z = torch.randn(5, 3, 8, requires_grad=True)
    ours = OffDropoutLoss(0.05)(z)
    a, p, n = (F.normalize(z[:, v], dim=-1) for v in range(3))
    total = 0.0
    for i in range(5):
        pos = (a[i] @ p[i]) / 0.05
        negs = [(n[i] @ n[j]) / 0.05 for j in range(5) if j != i]
        total = total - pos + torch.logsumexp(torch.stack([pos, *negs]), 0)
    assert torch.allclose(ours, total / 5, atol=1e-5)
    ours.backward()
    assert z.grad[:, 2].abs().sum() > 0  # the plain pass is trained too


def test_the_plain_view_is_encoded_with_dropout_off_and_with_gradient(tiny_bert, tmp_path):
    from simcse.training.setup import build_model

    config = train_config(
        tiny_bert, _txt(tmp_path), tmp_path / "o", negatives_without_dropout=True, dropout=0.3
    )
    model, _ = build_model(config, 3)
    tok = model.encoder.tokenizer(
        [s for s in SENTENCES[:4] for _ in range(3)], padding=True, return_tensors="pt"
    )
    model.train()
    emb, _ = model(tok.input_ids, tok.attention_mask)
    assert model.training and model.encoder.training  # back in train mode after the plain pass
    model.encoder.eval()
    with torch.no_grad():
        plain = model.encoder(tok.input_ids[2::3], tok.attention_mask[2::3], with_mlp=True)
    assert torch.allclose(emb[2::3], plain, atol=1e-5)
    assert not torch.allclose(emb[0::3], plain, atol=1e-3)  # the anchors had dropout
    assert emb.requires_grad


def test_dimension_contrast_is_infonce_over_standardised_dimensions():
    torch.manual_seed(1)
    z = torch.randn(16, 2, 6)
    base = ContrastiveLoss(0.05)
    ours = DimensionContrast(base, weight=0.1, temperature=5.0)(z) - base(z)

    def standard(x):
        return (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)

    c = standard(z[:, 0]).T @ standard(z[:, 1]) / 16 / 5.0
    term = torch.stack([-c[k, k] + torch.logsumexp(c[k], 0) for k in range(6)]).mean()
    assert torch.allclose(ours, 0.1 * term, atol=1e-5)
    z3 = torch.randn(16, 3, 6)
    with_plain = DimensionContrast(OffDropoutLoss(0.05), 1.0, 5.0).term(z3)
    n = z3[:, 2]
    moments = n.T @ n / 16 / 5.0
    pos = (standard(z3[:, 0]) * standard(z3[:, 1])).sum(0) / 16 / 5.0
    term3 = torch.stack([
        -pos[k] + torch.logsumexp(torch.cat([moments[k][torch.arange(6) != k], pos[k : k + 1]]), 0)
        for k in range(6)
    ]).mean()  # fmt: skip
    assert torch.allclose(with_plain, term3, atol=1e-5)


def test_gradcache_matches_one_pass_with_off_dropout_and_the_dimension_term(tiny_bert, tmp_path):
    import contextlib

    from simcse.training.setup import build_model
    from simcse.training.steps import _chunks, gradcache_step

    config = train_config(tiny_bert, _txt(tmp_path), tmp_path / "o", negatives_without_dropout=True)
    model, _ = build_model(config, 3)
    model.train()
    loss_fn = DimensionContrast(OffDropoutLoss(0.05), 0.1)
    tok = model.encoder.tokenizer(
        [s for s in SENTENCES[:8] for _ in range(3)], padding=True, return_tensors="pt"
    )
    batch = {"input_ids": tok.input_ids, "attention_mask": tok.attention_mask}
    torch.manual_seed(11)
    loss, _ = gradcache_step(model, batch, 3, 3, loss_fn, {}, torch.device("cpu"), contextlib.nullcontext())
    cached = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    # reference: the same chunks with autograd in the same random order (the same dropout masks), one loss
    torch.manual_seed(11)
    embs = [model(c["input_ids"], c["attention_mask"])[0] for c in _chunks(batch, 3, 3)]
    reference = loss_fn(torch.cat(embs).view(-1, 3, embs[0].shape[-1]))
    reference.backward()
    assert torch.allclose(loss, reference, atol=1e-6)
    assert len(cached) > 0
    for k, p in model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(cached[k], p.grad, atol=1e-5), k


# --------------------------------------------------------------------------------- false-negative filter
def test_guide_drops_negatives_it_rates_above_the_positive_and_never_the_positive():
    from simcse.training.negatives import GuideFilter

    g = F.normalize(torch.tensor([
        [[1.0, 0.0], [0.8, 0.6]],     # row 0: positive at cos 0.8
        [[0.0, 1.0], [0.0, 1.0]],     # row 1: positive at cos 1
        [[0.9, 0.1], [0.6, 0.8]],     # row 2
    ]), dim=-1)  # fmt: skip
    guide = GuideFilter.__new__(GuideFilter)
    guide.margin = 0.0
    drop = guide.mask(g, 2)
    sims = g[:, 0] @ g[:, 1].T
    expected = sims > sims.diagonal().unsqueeze(1)
    expected.fill_diagonal_(False)
    assert torch.equal(drop, expected) and drop.any() and not drop.diagonal().any()
    guide.margin = 1.0  # drop everything above positive - 1
    assert torch.equal(
        guide.mask(g, 2), ~torch.eye(3, dtype=torch.bool) & (sims > sims.diagonal().unsqueeze(1) - 1)
    )
    z = torch.randn(3, 2, 4)
    guide._mask = drop
    ours = ContrastiveLoss(0.05, filters=[guide])(z)
    a, p = F.normalize(z[:, 0], dim=-1), F.normalize(z[:, 1], dim=-1)
    logits = (a @ p.T / 0.05).masked_fill(drop, -math.inf)
    assert torch.allclose(ours, F.cross_entropy(logits, torch.arange(3)), atol=1e-5)


def test_unsup_guide_drops_only_duplicates_of_the_anchor(tiny_bert):
    from simcse.modeling.encoder import Encoder
    from simcse.training.data import Collator
    from simcse.training.negatives import GuideFilter

    guide_model = Encoder.load(tiny_bert, "avg")
    rows = [(SENTENCES[0],), (SENTENCES[1],), (SENTENCES[0],), (SENTENCES[2],)]
    from simcse.training.methods.guide import GuideTokens

    batch = Collator(guide_model.tokenizer, 32, 2, pieces=[GuideTokens(guide_model.tokenizer, 32)])(rows)
    guide = GuideFilter(guide_model, margin=1e-4)
    guide.before_step(batch)
    assert "guide_input_ids" not in batch  # taken out before the step's forward
    drop = guide(torch.zeros(4, 2, 8))
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0, 2] = expected[2, 0] = True
    assert torch.equal(drop, expected)
    guide.after_step()
    assert guide(torch.zeros(4, 2, 8)) is None


# ------------------------------------------------------------------------------------- Contrastive Tension
def test_binary_objective_is_bce_over_every_anchor_candidate_pair():
    torch.manual_seed(2)
    z = torch.randn(4, 2, 8)
    ours = ContrastiveLoss(1.0, similarity="dot", objective="binary")(z)
    logits = z[:, 0] @ z[:, 1].T
    assert torch.allclose(ours, F.binary_cross_entropy_with_logits(logits, torch.eye(4)), atol=1e-5)


# --------------------------------------------------------------------------------------- training, options
@pytest.mark.parametrize("options", [
    {"word_repetition": 0.32, "queue_size": 8, "queue_momentum": 0.995},                     # ESimCSE
    {"negatives_without_dropout": True, "dimension_contrast_weight": 0.1},                 # SimCSE++
    {"negatives_without_dropout": True, "gradcache_chunk_size": 2, "noise_negatives": 4},  # composed
    {"encoders": "two", "loss": "binary", "similarity": "dot", "temperature": 1.0, "pooler": "avg"},  # CT
], ids=["esimcse", "simcse++", "composed", "ct"])  # fmt: skip
def test_each_variant_trains_and_saves_a_loadable_encoder(tiny_bert, tmp_path, options):
    import simcse
    from simcse.training.loop import train

    out = tmp_path / "run"
    assert train(train_config(tiny_bert, _txt(tmp_path), out, **options)).global_step == 4
    emb = simcse.SimCSE(str(out)).encode(SENTENCES[:3], return_numpy=True)
    assert emb.shape[0] == 3 and np.isfinite(emb).all()


def test_guide_training_with_the_guide_named_by_path(tiny_bert, tiny_bert4, tmp_path):
    from simcse.training.loop import train

    csv = tmp_path / "pairs.csv"
    csv.write_text(
        "sent0,sent1\n" + "\n".join(f"{a},{b}" for a, b in zip(SENTENCES[:8], SENTENCES[8:16])) + "\n"
    )
    assert train(train_config(tiny_bert, csv, tmp_path / "run", guide_model=str(tiny_bert4))).global_step == 4
    with pytest.raises(ConfigError, match="guide_model '.*nowhere' cannot be loaded"):
        train(train_config(tiny_bert, csv, tmp_path / "run2", guide_model=str(tmp_path / "nowhere")))
    assert not (tmp_path / "run2").exists()  # nothing written


@pytest.mark.parametrize("options, words", [
    ({"word_repetition": 1.5}, "word_repetition must be in"),
    ({"word_repetition": 0.3, "objective": "sup"}, "word_repetition changes the positive of unsup"),
    ({"queue_momentum": 1.0}, "queue_momentum must be in"),
    ({"queue_size": -1}, "queue_size must be >= 0"),
    ({"negatives_without_dropout": True, "encoders": "two"}, "one shared encoder"),
    ({"negatives_without_dropout": True, "loss": "binary"}, "does not combine with loss binary"),
    ({"dimension_contrast_temperature": 0.0}, "dimension_contrast_temperature must be > 0"),
    ({"dimension_contrast_weight": -1.0}, "dimension_contrast_weight must be >= 0"),
    ({"loss": "triplet"}, "loss must be one of infonce, binary"),
    ({"loss": "binary", "hard_negative_weight": 2.0, "objective": "sup"}, "loss binary has none"),
])  # fmt: skip
def test_bad_values_and_combinations_are_refused_in_one_line(options, words):
    with pytest.raises(ConfigError, match=words) as e:
        TrainConfig(train_file="x.txt", **options).validate()
    assert "\n" not in str(e.value)


def test_unsup_only_pieces_refuse_a_pair_file(tiny_bert, tmp_path):
    from simcse.training.loop import train

    csv = tmp_path / "pairs.csv"
    csv.write_text(
        "sent0,sent1\n" + "\n".join(f"{a},{b}" for a, b in zip(SENTENCES[:8], SENTENCES[8:16])) + "\n"
    )
    for name, value in (("word_repetition", 0.3), ("negatives_without_dropout", True)):
        with pytest.raises(DataError, match=f"{name} is for one-sentence"):
            train(train_config(tiny_bert, csv, tmp_path / name, **{name: value}))
