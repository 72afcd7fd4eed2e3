"""DiffCSE: the generator's edit and its replaced-token labels, the discriminator conditioned on the sentence
embedding, GradCache with the RTD term, the options' errors, a CPU run, and resume."""

from __future__ import annotations

import contextlib
import copy
import json
import types

import pytest
import torch

from simcse.core.errors import ConfigError
from simcse.training.config import TrainConfig
from simcse.training.data import Collator
from simcse.training.heads import Discriminator
from simcse.training.losses import ContrastiveLoss
from simcse.training.masking import IGNORE, GeneratorEdit, load_generator, replaced_token_labels
from tests.helpers import (
    QUIET,
    SENTENCES,
    as_if_killed_before_the_final_model,
    assert_one_line_error,
    make_tiny_bert,
    run,
    train_config,
    training_encoder,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert))


@pytest.fixture
def txt(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path


class FixedGenerator(torch.nn.Module):
    """A stand-in generator: its most likely token is ``predict(input_ids)`` at every position."""

    def __init__(self, vocab_size: int, predict):
        super().__init__()
        self.vocab_size, self.predict = vocab_size, predict

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        logits.scatter_(-1, self.predict(input_ids).unsqueeze(-1), 1.0)
        return types.SimpleNamespace(logits=logits)


def _batch(tokenizer, rows=SENTENCES):
    return Collator(tokenizer, 16, views=2)([(s,) for s in rows])


def _special_or_pad(tokenizer, batch):
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    return ~batch["attention_mask"].bool() | torch.isin(batch["input_ids"], special)


def test_labels_are_exactly_where_the_edited_id_differs():
    original = torch.tensor([[2, 10, 11, 12, 3, 0], [2, 13, 14, 3, 0, 0]])
    mask = (original != 0).long()
    edited = torch.tensor([[2, 10, 99, 12, 3, 0], [2, 98, 14, 3, 0, 0]])
    labels = replaced_token_labels(original, edited, mask, torch.tensor([0, 2, 3]))
    assert labels.tolist() == [[IGNORE, 0, 1, 0, IGNORE, IGNORE], [IGNORE, 1, 0, IGNORE, IGNORE, IGNORE]]


def test_a_generator_that_predicts_the_original_replaces_nothing(tokenizer):
    batch = _batch(tokenizer)
    original = batch["input_ids"]
    editor = GeneratorEdit(FixedGenerator(len(tokenizer), lambda ids: original), tokenizer, 0.5)
    edited, labels = editor(batch["input_ids"], batch["attention_mask"])
    assert torch.equal(edited, original)
    special_or_pad = _special_or_pad(tokenizer, batch)
    assert (labels[~special_or_pad] == 0).all() and (labels[special_or_pad] == IGNORE).all()


def test_a_generator_forced_to_another_token_replaces_exactly_the_masked_tokens(tokenizer):
    batch = _batch(tokenizer)
    other = tokenizer.convert_tokens_to_ids("##z")
    assert other not in batch["input_ids"]
    editor = GeneratorEdit(
        FixedGenerator(len(tokenizer), lambda ids: torch.full_like(ids, other)), tokenizer, 0.4
    )
    torch.manual_seed(5)
    _, chosen = editor.mask(batch["input_ids"], batch["attention_mask"])
    torch.manual_seed(5)
    edited, labels = editor(batch["input_ids"], batch["attention_mask"])
    assert chosen.any() and torch.equal(labels == 1, chosen)
    assert (edited[chosen] == other).all() and torch.equal(edited[~chosen], batch["input_ids"][~chosen])
    special_or_pad = _special_or_pad(tokenizer, batch)
    assert not (chosen & special_or_pad).any() and (labels[special_or_pad] == IGNORE).all()
    assert ((labels == 0) | (labels == 1))[~special_or_pad].all()


def test_the_generator_never_puts_a_special_token(tokenizer):
    batch = _batch(tokenizer)
    sep = tokenizer.sep_token_id
    editor = GeneratorEdit(
        FixedGenerator(len(tokenizer), lambda ids: torch.full_like(ids, sep)), tokenizer, 0.5
    )
    edited, labels = editor(batch["input_ids"], batch["attention_mask"])
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    changed = labels == 1
    assert changed.any() and not torch.isin(edited[changed], special).any()


def test_special_and_padding_tokens_are_never_masked_and_the_ratio_holds_on_average(tokenizer):
    batch = _batch(tokenizer, SENTENCES * 8)
    editor = GeneratorEdit(FixedGenerator(len(tokenizer), lambda ids: ids), tokenizer, 0.3)
    special_or_pad = _special_or_pad(tokenizer, batch)
    torch.manual_seed(0)
    shares = []
    for _ in range(20):
        masked, chosen = editor.mask(batch["input_ids"], batch["attention_mask"])
        assert not (chosen & special_or_pad).any()
        assert torch.equal(masked[special_or_pad], batch["input_ids"][special_or_pad])
        shares.append(chosen.sum().item() / (~special_or_pad).sum().item())
        # BERT's corruption of the chosen tokens: about 80% [MASK]
        assert 0.65 < (masked[chosen] == tokenizer.mask_token_id).float().mean().item() < 0.95
    assert sum(shares) / len(shares) == pytest.approx(0.3, abs=0.02)


def _diffcse_model(tiny_bert, tiny_bert_mlm, txt, tmp_path, **overrides):
    from simcse.training.setup import build_model

    config = train_config(tiny_bert, txt, tmp_path / "o", diffcse_generator=str(tiny_bert_mlm), **overrides)
    torch.manual_seed(0)
    model, _ = build_model(config)
    return model, load_generator(config.diffcse_generator, model.encoder.tokenizer, config.diffcse_mask_ratio)


def test_the_discriminator_is_conditioned_on_the_sentence_embedding(tiny_bert, tiny_bert_mlm, txt, tmp_path):
    model, editor = _diffcse_model(tiny_bert, tiny_bert_mlm, txt, tmp_path)
    model.train()
    disc = model.discriminator
    # a copy of the pretrained transformer, not the encoder itself
    theirs, ours = dict(disc.backbone.named_parameters()), dict(model.encoder.backbone.named_parameters())
    assert theirs.keys() == ours.keys()
    assert all(torch.equal(theirs[k], ours[k]) and theirs[k] is not ours[k] for k in ours)
    batch = _batch(model.encoder.tokenizer)
    torch.manual_seed(1)
    batch["rtd_input_ids"], batch["rtd_labels"] = editor(batch["input_ids"], batch["attention_mask"])
    seen = []
    hook = disc.backbone.encoder.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).detach()),
        with_kwargs=True,
    )
    try:
        emb, terms = model(**{k: v for k, v in batch.items() if v.dim() > 0})
    finally:
        hook.remove()
    assert torch.equal(seen[0][:, 0], emb.detach())  # the [CLS] input of the discriminator's layers
    total, count = terms["rtd"]
    assert count == int((batch["rtd_labels"] != IGNORE).sum()) > 0
    total.backward()  # the RTD term alone
    for name, module in (("backbone", model.encoder.backbone), ("mlp", model.encoder.mlp)):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    assert disc.head.weight.grad.abs().sum() > 0


def test_gradcache_with_the_rtd_term_equals_one_pass(tmp_path):
    """Without dropout the chunked replay gives the one-pass gradient, the RTD term computed per chunk and
    normalised over the whole batch."""
    from simcse.training.model import SimCSEModel
    from simcse.training.steps import gradcache_step, plain_step

    path = make_tiny_bert(tmp_path / "m", dropout=0.0, init_range=0.5)
    torch.manual_seed(0)
    encoder = training_encoder(str(path), "cls")
    from simcse.training.methods.diffcse import rtd_term

    model = SimCSEModel(encoder, parts={"discriminator": Discriminator(copy.deepcopy(encoder.backbone))},
                        aux_terms={"rtd": rtd_term})  # fmt: skip
    model.train()
    tokenizer = encoder.tokenizer
    other = tokenizer.convert_tokens_to_ids("##z")
    editor = GeneratorEdit(
        FixedGenerator(len(tokenizer), lambda ids: torch.full_like(ids, other)), tokenizer, 0.3
    )
    batch = _batch(tokenizer)
    torch.manual_seed(2)
    batch["rtd_input_ids"], batch["rtd_labels"] = editor(batch["input_ids"], batch["attention_mask"])
    weights, loss_fn = {"rtd": 0.5}, ContrastiveLoss(0.05)
    loss, aux = plain_step(model, batch, 2, loss_fn, weights, contextlib.nullcontext(), lambda x: x)
    one = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    cl, aux_gc = gradcache_step(
        model, batch, 2, 5, loss_fn, weights, torch.device("cpu"), contextlib.nullcontext()
    )
    assert torch.allclose(cl + 0.5 * aux_gc["rtd"], loss.detach(), atol=1e-5)
    assert torch.allclose(aux_gc["rtd"], aux["rtd"], atol=1e-5)
    chunked = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert chunked.keys() == one.keys() and any(k.startswith("discriminator.") for k in one)
    for k in one:
        assert torch.allclose(chunked[k], one[k], atol=1e-5), k


def test_options_without_a_generator_are_one_line_errors(capsys, tiny_bert, txt, tmp_path):
    with pytest.raises(ConfigError, match="diffcse_generator"):
        TrainConfig(train_file=str(txt), diffcse_weight=0.1).validate()
    TrainConfig(train_file=str(txt)).validate()  # the defaults alone: DiffCSE off, no complaint
    with pytest.raises(ConfigError, match="diffcse_mask_ratio must be in"):
        TrainConfig(train_file=str(txt), diffcse_generator="g", diffcse_mask_ratio=1.0).validate()
    out = tmp_path / "out"
    code, _, err = run(capsys, ["train", "--train_file", str(txt), "--model_name_or_path", str(tiny_bert),
                                "--output_dir", str(out), "--diffcse_weight", "0.1", *QUIET])  # fmt: skip
    assert_one_line_error(code, err, "diffcse_generator")
    assert not out.exists()


def _other_vocab_mlm(path):
    """A tiny BERT MLM whose vocabulary is not the tiny encoder's."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    from tests.helpers import tiny_vocab

    path.mkdir(parents=True)
    vocab = tiny_vocab()[:-10] + [f"other{i}" for i in range(12)]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizer(str(path / "vocab.txt"), do_lower_case=True).save_pretrained(str(path))
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    BertForMaskedLM(config).save_pretrained(str(path))
    return path


@pytest.mark.parametrize("which", ["vocabulary", "no head", "missing"])
def test_a_bad_generator_is_a_one_line_error_before_anything_is_written(
    capsys, tiny_bert, txt, tmp_path, which
):
    generator = {"vocabulary": lambda: _other_vocab_mlm(tmp_path / "g"), "no head": lambda: tiny_bert,
                 "missing": lambda: tmp_path / "nowhere"}[which]()  # fmt: skip
    expected = {"vocabulary": "vocabulary", "no head": "no pretrained MLM head", "missing": "cannot load"}[
        which
    ]
    out = tmp_path / "out"
    capsys.readouterr()  # what making the models printed
    code, _, err = run(capsys, ["train", "--train_file", str(txt), "--model_name_or_path", str(tiny_bert),
                                "--output_dir", str(out), "--diffcse_generator", str(generator), *QUIET])  # fmt: skip
    assert_one_line_error(code, err, "diffcse_generator", expected)
    assert not out.exists()


def test_load_generator_checks_the_vocabulary(tiny_bert_mlm, tokenizer, tmp_path):
    editor = load_generator(str(tiny_bert_mlm), tokenizer, 0.3)
    assert not editor.generator.training and not any(p.requires_grad for p in editor.generator.parameters())
    with pytest.raises(ConfigError, match="vocabulary"):
        load_generator(str(_other_vocab_mlm(tmp_path / "g")), tokenizer, 0.3)


def test_cpu_smoke_run_saves_an_encoder_without_the_discriminator(
    capsys, tiny_bert, tiny_bert_mlm, tmp_path, txt
):
    from safetensors.torch import load_file

    from simcse import SimCSE
    from simcse.modeling.encoder import Encoder

    generator = tmp_path / "generator"  # the tiny generator saved to a directory and named by path
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    AutoModelForMaskedLM.from_pretrained(str(tiny_bert_mlm)).save_pretrained(str(generator))
    AutoTokenizer.from_pretrained(str(tiny_bert_mlm)).save_pretrained(str(generator))
    out = tmp_path / "run"
    code, _, err = run(capsys, ["train", "--train_file", str(txt), "--model_name_or_path", str(tiny_bert),
                                "--output_dir", str(out), "--diffcse_generator", str(generator), "--batch_size", "4",
                                "--max_seq_len", "16", "--max_steps", "3", "--logging_steps", "1",
                                "--mlp_only_train", "true", *QUIET])  # fmt: skip
    assert code == 0, err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 3 and all(r["rtd_loss"] > 0 for r in train)
    weights = load_file(str(out / "model.safetensors"))
    assert not any("discriminator" in k or k.startswith("head.") for k in weights)
    meta = json.loads((out / "simcse.json").read_text())
    assert meta["training_config"]["diffcse_generator"] == str(generator)
    vectors = SimCSE(str(out)).encode(["a man is playing a guitar .", "two dogs run"])
    assert vectors.shape[0] == 2 and torch.isfinite(vectors).all()
    assert Encoder.load(str(out)).inference_pooler == "cls_before_pooler"


@pytest.mark.parametrize("batchnorm", [False, True])
def test_resume_restores_the_discriminator(tiny_bert, tiny_bert_mlm, txt, tmp_path, batchnorm):
    """Resuming from step 2 continues exactly: the discriminator (and the BatchNorm projection with its
    running statistics), their optimiser state and the random state of the masking are in the checkpoint."""
    from safetensors.torch import load_file

    from simcse.training.loop import train

    def config(out):
        return train_config(tiny_bert, txt, out, diffcse_generator=str(tiny_bert_mlm), diffcse_weight=1.0,
                            max_steps=4, save_steps=2, learning_rate=1e-2, mlp_only_train=batchnorm,
                            diffcse_batchnorm=batchnorm)  # fmt: skip

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    for out in (whole, resumed):
        train(config(out))
    as_if_killed_before_the_final_model(resumed)
    checkpoint = load_file(str(resumed / "checkpoints" / "step-00000002" / "model.safetensors"))
    assert any(k.startswith("discriminator.") for k in checkpoint)
    train(config(resumed), resume=True)
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_batchnorm_projection_replaces_the_mlp_in_training_only(tiny_bert, tiny_bert_mlm, txt, tmp_path):
    from safetensors.torch import load_file

    from simcse.modeling.encoder import Encoder
    from simcse.training.heads import BatchNormProjection
    from simcse.training.loop import train

    model, editor = _diffcse_model(
        tiny_bert, tiny_bert_mlm, txt, tmp_path, mlp_only_train=True, diffcse_batchnorm=True
    )
    assert model.encoder.mlp is None and isinstance(model.projector, BatchNormProjection)
    model.train()
    batch = _batch(model.encoder.tokenizer)
    batch["rtd_input_ids"], batch["rtd_labels"] = editor(batch["input_ids"], batch["attention_mask"])
    emb, terms = model(**{k: v for k, v in batch.items() if v.dim() > 0})
    # the last BatchNorm (no affine): every dimension has mean 0 and variance 1 over the batch
    assert torch.allclose(emb.mean(0), torch.zeros(emb.shape[1]), atol=1e-5)
    variance = emb.var(0, unbiased=False)  # var / (var + eps) of the unnormalised values
    assert torch.allclose(variance, torch.ones(emb.shape[1]), atol=1e-2)
    terms["rtd"][0].backward()
    assert model.projector.net[0].weight.grad.abs().sum() > 0  # the discriminator is conditioned on it
    out = tmp_path / "run"
    train(train_config(tiny_bert, txt, out, diffcse_generator=str(tiny_bert_mlm), mlp_only_train=True,
                       diffcse_batchnorm=True, max_steps=2))  # fmt: skip
    saved = load_file(str(out / "model.safetensors"))
    assert not any(k.startswith(("projector", "net.")) for k in saved)
    assert Encoder.load(str(out)).inference_pooler == "cls_before_pooler"


@pytest.mark.parametrize(
    "changes, message",
    [({"pooler": "avg"}, "needs pooler cls and mlp_only_train"), ({}, "needs pooler cls and mlp_only_train"),
     ({"mlp_only_train": True, "gradcache_chunk_size": 2}, "GradCache")],
)  # fmt: skip
def test_the_batchnorm_projection_is_refused_where_it_cannot_apply(txt, changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(train_file=str(txt), diffcse_batchnorm=True, **changes).validate()
