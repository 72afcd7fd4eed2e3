"""The contrastive loss against a transcription of the original SimCSE code, and the MLM masking."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from simcse.training.losses import ContrastiveLoss


def original_simcse_loss(z1, z2, z3=None, temp=0.05, hard_negative_weight=0.0):
    """princeton-nlp/SimCSE models.py cl_forward (single process), loops and all."""
    cos = torch.nn.CosineSimilarity(dim=-1)
    cos_sim = cos(z1.unsqueeze(1), z2.unsqueeze(0)) / temp
    if z3 is not None:
        z1_z3_cos = cos(z1.unsqueeze(1), z3.unsqueeze(0)) / temp
        cos_sim = torch.cat([cos_sim, z1_z3_cos], 1)
    labels = torch.arange(cos_sim.size(0)).long()
    if z3 is not None:
        n = z1_z3_cos.size(-1)
        weights = torch.tensor(
            [
                [0.0] * (cos_sim.size(-1) - n) + [0.0] * i + [hard_negative_weight] + [0.0] * (n - i - 1)
                for i in range(n)
            ]
        )
        cos_sim = cos_sim + weights
    return F.cross_entropy(cos_sim, labels)


@pytest.mark.parametrize("views", [2, 3])
@pytest.mark.parametrize("temp", [0.05, 0.1])
def test_matches_original_simcse(views, temp):
    torch.manual_seed(0)
    z = torch.randn(8, views, 16, dtype=torch.float64)
    ours = ContrastiveLoss(temp)(z)
    ref = original_simcse_loss(*z.unbind(1), temp=temp)
    assert torch.allclose(ours.double(), ref, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 10.0])
def test_hard_negative_weight_is_multiplicative(alpha):
    torch.manual_seed(1)
    z = torch.randn(6, 3, 16)
    ours = ContrastiveLoss(0.05, hard_negative_weight=alpha)(z)
    ref = original_simcse_loss(*z.unbind(1), temp=0.05, hard_negative_weight=math.log(alpha))
    assert torch.allclose(ours, ref.float(), atol=1e-5)


def test_zero_weight_removes_own_hard_negative():
    torch.manual_seed(2)
    z = torch.randn(5, 3, 8)
    loss = ContrastiveLoss(0.05, hard_negative_weight=0.0)(z)
    a, p, n = (F.normalize(t, dim=-1) for t in z.unbind(1))
    logits = torch.cat([a @ p.T, a @ n.T], 1) / 0.05
    logits[torch.arange(5), 5 + torch.arange(5)] = -math.inf
    assert torch.allclose(loss, F.cross_entropy(logits, torch.arange(5)), atol=1e-5)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_two_hard_negatives_are_both_candidates_and_both_weighted(alpha):
    """Table 7's contradiction + neutral: views (anchor, positive, negative 1, negative 2); every positive
    and negative is a candidate, and alpha weighs the anchor's own two negatives."""
    torch.manual_seed(3)
    z = torch.randn(5, 4, 8)
    loss = ContrastiveLoss(0.05, hard_negative_weight=alpha)(z)
    a, p, n1, n2 = (F.normalize(t, dim=-1) for t in z.unbind(1))
    logits = torch.cat([a @ p.T, a @ n1.T, a @ n2.T], 1) / 0.05
    own = torch.arange(5)
    logits[own, 5 + own] += math.log(alpha)
    logits[own, 10 + own] += math.log(alpha)
    assert torch.allclose(loss, F.cross_entropy(logits, own), atol=1e-5)


def test_loss_is_fp32_under_bf16_inputs_and_gradients_flow():
    z = torch.randn(4, 2, 8, dtype=torch.bfloat16, requires_grad=True)
    loss = ContrastiveLoss()(z)
    assert loss.dtype == torch.float32
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad.float()).all()


def test_perfect_positives_give_low_loss():
    z = torch.eye(4).unsqueeze(1).repeat(1, 2, 1)
    assert ContrastiveLoss(0.05)(z) < 1e-6


def test_mlm_masking_copies_and_follows_80_10_10():
    from simcse.training.masking import MLMMasker
    from tests.helpers import tiny_vocab

    class Tok:
        mask_token_id, all_special_ids = 4, [0, 1, 2, 3, 4]

        def __len__(self):
            return len(tiny_vocab())

    masker = MLMMasker(Tok(), 0.15)
    torch.manual_seed(0)
    ids = torch.randint(5, 100, (400, 40))
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones_like(ids)
    mask[:, 30:] = 0
    original = ids.clone()
    mlm_ids, labels = masker(ids, mask)
    assert torch.equal(ids, original)  # the contrastive inputs stay intact
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 30:].any()  # no special tokens, no padding
    rate = chosen.float().sum() / (mask[:, 1:30].sum())
    assert abs(rate - 0.15) < 0.01
    assert torch.equal(labels[chosen], original[chosen])
    masked = (mlm_ids == 4) & chosen
    unchanged = (mlm_ids == original) & chosen
    assert abs(masked.sum() / chosen.sum() - 0.8) < 0.03
    assert abs(unchanged.sum() / chosen.sum() - 0.1) < 0.03
    assert torch.equal(mlm_ids[~chosen], original[~chosen])


def test_dot_similarity_uses_the_unnormalised_embeddings():
    torch.manual_seed(3)
    views = torch.randn(5, 2, 8) * 3
    anchors, positives = views[:, 0], views[:, 1]
    expected = F.cross_entropy(anchors @ positives.T / 0.5, torch.arange(5))
    got = ContrastiveLoss(0.5, similarity="dot")(views)
    assert torch.allclose(got, expected, atol=1e-5)
    # and not the cosine one, which is scale-free
    assert not torch.allclose(got, ContrastiveLoss(0.5)(views), atol=1e-3)
    assert torch.allclose(ContrastiveLoss(0.5)(views), ContrastiveLoss(0.5)(views * 7), atol=1e-5)
    with pytest.raises(ValueError, match="cosine or dot"):
        ContrastiveLoss(similarity="euclid")


def test_a_shared_dropout_mask_is_one_pass_whose_embedding_is_both_views(tmp_path):
    """The paper's "fixed 0.1": encoding the sentence once and using its embedding as both views gives the
    loss and gradients of encoding it twice under the SAME mask (here: a dropout that copies each pair's mask,
    on the padded forward with attention dropout off, whose functional dropout could not share masks)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    from simcse.modeling.encoder import Encoder
    from simcse.modeling.sentence_encoder import pad_batch
    from simcse.training.losses import SharedMaskViews
    from tests.helpers import SENTENCES, make_tiny_bert

    path = make_tiny_bert(tmp_path / "bert", init_range=0.5)
    config = BertConfig.from_pretrained(str(path), attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.1)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(path))
    BertTokenizer.from_pretrained(str(path))

    class PairSharedDropout(torch.nn.Module):
        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward(self, x):
            mask = F.dropout(torch.ones_like(x[0::2]), self.p, True)  # the draws of one pass over the rows
            return x * mask.repeat_interleave(2, 0)

    def run(shared: bool, pair_masks: bool = True):
        enc = Encoder.load(path, pooler="avg", packed=False)
        enc.train()
        if not shared and pair_masks:
            for parent in enc.modules():
                for name, child in list(parent.named_children()):
                    if isinstance(child, torch.nn.Dropout):
                        setattr(parent, name, PairSharedDropout(child.p))
        tokens = enc.tokenize(SENTENCES[:6], 16)
        ids = tokens.input_ids if shared else [x for x in tokens.input_ids for _ in range(2)]
        batch = pad_batch(ids, tokens.pad_token_id)
        torch.manual_seed(1)
        z = enc(batch["input_ids"], batch["attention_mask"])
        loss = (
            SharedMaskViews(ContrastiveLoss())(z.view(-1, 1, z.shape[-1]))
            if shared
            else ContrastiveLoss()(z.view(-1, 2, z.shape[-1]))
        )
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in enc.parameters() if p.grad is not None]

    loss_once, grads_once = run(shared=True)
    loss_twice, grads_twice = run(shared=False)
    assert not torch.allclose(run(shared=False, pair_masks=False)[0], loss_once, atol=1e-3)  # unsup SimCSE
    assert torch.allclose(loss_once, loss_twice, atol=1e-5)
    assert len(grads_once) == len(grads_twice)
    for a, b in zip(grads_once, grads_twice):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="one per row"):
        SharedMaskViews(ContrastiveLoss())(torch.randn(4, 2, 8))


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_gaussian_noise_negatives_are_drawn_under_the_seed_and_join_every_anchors_candidates(similarity):
    """GS-InfoNCE: ``count`` N(0, std^2) vectors per step are candidates (never targets) of every anchor."""
    from simcse.training.negatives import GaussianNoise

    z = torch.randn(6, 2, 8)
    loss = ContrastiveLoss(0.05, similarity=similarity, sources=[GaussianNoise(count=10, std=0.5)])
    torch.manual_seed(4)
    ours = loss(z)
    torch.manual_seed(4)
    noise = torch.randn(10, 8) * 0.5
    prep = (lambda t: F.normalize(t, dim=-1)) if similarity == "cosine" else (lambda t: t)
    a, p, n = prep(z[:, 0]), prep(z[:, 1]), prep(noise)
    logits = torch.cat([a @ p.T, a @ n.T], 1) / 0.05
    assert logits.shape == (6, 16)
    assert torch.allclose(ours, F.cross_entropy(logits, torch.arange(6)), atol=1e-4)
    torch.manual_seed(5)
    assert not torch.allclose(loss(z), ours)  # a new draw every step
    plain = ContrastiveLoss(0.05, similarity=similarity)(z)
    assert ours > plain  # more negatives: a larger loss


def test_noise_negatives_train_and_bad_values_are_refused(tiny_bert, tmp_path):
    from simcse.core.errors import ConfigError
    from simcse.training.config import TrainConfig
    from simcse.training.loop import train
    from tests.helpers import SENTENCES, train_config

    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    assert train(train_config(tiny_bert, txt, tmp_path / "run", noise_negatives=16)).global_step == 4
    with pytest.raises(ConfigError, match="noise_negatives must be >= 0") as e:
        TrainConfig(train_file="x.txt", noise_negatives=-1, noise_std=0.0).validate()
    assert "noise_std must be > 0" in str(e.value)
