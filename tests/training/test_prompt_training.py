"""PromptBERT training (pooler prompt): each view in its own template, the template bias subtracted in
training, GradCache equal to one pass, ``simcse train`` end to end, and the combinations refused up front."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch

from simcse.core.errors import ConfigError
from simcse.modeling.encoder import Encoder
from simcse.modeling.prompt_templates import BERT_TRAINING_TEMPLATES
from simcse.training.config import TrainConfig
from simcse.training.data import Collator
from simcse.training.losses import ContrastiveLoss
from simcse.training.model import SimCSEModel
from simcse.training.steps import _chunks, gradcache_step
from tests.helpers import QUIET, SENTENCES, make_tiny_bert, run, train_config, training_encoder


def _txt(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return txt


def _encoder(path, denoise="train"):
    return training_encoder(str(path), "prompt", mlp_only_train=True,
                                prompt_template=list(BERT_TRAINING_TEMPLATES), prompt_denoise=denoise)  # fmt: skip


def test_the_collator_puts_the_anchor_and_the_positive_in_the_two_templates(tiny_bert):
    enc = _encoder(tiny_bert)
    first, second = enc.prompt.templates
    batch = Collator(enc.tokenizer, 4, views=2, prompt=enc.prompt)([(s,) for s in SENTENCES[:3]])
    assert batch["template"].tolist() == [0, 1, 0, 1, 0, 1]
    for i, sentence in enumerate(SENTENCES[:3]):
        tokens = enc.tokenizer(sentence, add_special_tokens=False)["input_ids"][
            :4
        ]  # max_seq_len: the sentence
        for view, template in enumerate((first, second)):
            row = batch["input_ids"][2 * i + view]
            assert row[: int(batch["attention_mask"][2 * i + view].sum())].tolist() == template.wrap(tokens)
    # sup rows: the anchor in the first template, the positive and the hard negative in the second
    sup = Collator(enc.tokenizer, 8, views=3, prompt=enc.prompt)(
        [tuple(SENTENCES[:3]), tuple(SENTENCES[3:6])]
    )
    assert sup["template"].tolist() == [0, 1, 1, 0, 1, 1]


def test_training_subtracts_the_template_bias_of_each_views_template(tmp_path):
    path = make_tiny_bert(tmp_path / "m", dropout=0.0, init_range=0.5, seed=2)
    model = SimCSEModel(_encoder(path))
    plain = _encoder(path, denoise="none")
    plain.mlp.load_state_dict(model.encoder.mlp.state_dict())
    batch = Collator(model.encoder.tokenizer, 16, views=2, prompt=model.encoder.prompt)(
        [(s,) for s in SENTENCES[:4]]
    )
    model.train()
    plain.train()
    emb = model(batch["input_ids"], batch["attention_mask"], template=batch["template"])[0]
    with torch.no_grad():
        raw = plain(batch["input_ids"], batch["attention_mask"], with_mlp=False, template=batch["template"])
        lengths = plain.prompt.sentence_lengths(batch["attention_mask"], batch["template"])
        bias = plain.prompt.template_bias(plain.hidden_states, batch["template"], lengths, plain.num_layers)
        expected = plain.mlp(raw - bias)  # the paper: [MASK] state minus the template's, then the MLP
    assert torch.allclose(emb, expected, atol=1e-5)
    assert not torch.allclose(bias[0], bias[1], atol=1e-3)  # the two templates have their own bias


@pytest.fixture(scope="module")
def bert_dropout(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("prompt-gc"), dropout=0.1, init_range=0.5)


@pytest.mark.parametrize("packed", [False, True])
def test_gradcache_equals_one_pass_with_the_same_dropout_masks(bert_dropout, packed):
    """The reference: the same chunks forwarded with autograd in the same random order, then one loss."""
    torch.manual_seed(0)
    model = SimCSEModel(_encoder(bert_dropout))
    model.encoder.packed = model.encoder.packed and packed
    model.train()
    rows = [(s,) for s in SENTENCES[:12]]
    batch = Collator(model.encoder.tokenizer, 16, views=2, prompt=model.encoder.prompt)(rows)
    loss_fn = ContrastiveLoss(0.05)
    torch.manual_seed(123)
    loss_gc, _ = gradcache_step(
        model, batch, 2, 3, loss_fn, {}, torch.device("cpu"), contextlib.nullcontext()
    )
    grads_gc = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    embs = [
        model(c["input_ids"], c["attention_mask"], template=c["template"])[0] for c in _chunks(batch, 2, 3)
    ]
    loss_ref = loss_fn(torch.cat(embs).view(-1, 2, embs[0].shape[-1]))
    loss_ref.backward()
    assert torch.allclose(loss_gc, loss_ref, atol=1e-6)
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == grads_gc.keys() and "encoder.mlp.dense.weight" in grads
    for k, g in grads.items():
        assert torch.allclose(grads_gc[k], g, atol=1e-5), k


def test_simcse_train_with_the_prompt_pooler_saves_a_model_that_encodes_with_the_first_template(
    tiny_bert, tmp_path, capsys
):
    out = tmp_path / "run"
    code, _, err = run(capsys, ["train", "--train_file", str(_txt(tmp_path)), "--model_name_or_path", str(tiny_bert),
                                "--output_dir", str(out), "--pooler", "prompt", "--mlp_only_train", "--batch_size", "4",
                                "--max_steps", "3", "--max_seq_len", "16", "--gradcache_chunk_size", "2", *QUIET])  # fmt: skip
    assert code == 0, err
    meta = json.loads((out / "simcse.json").read_text())
    assert meta["pooler"] == "prompt" and meta["mlp"] is False and meta["step"] == 3
    assert meta["prompt_template"] == list(BERT_TRAINING_TEMPLATES) and meta["prompt_denoise"] == "train"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "SentenceTransformer" not in card and "template denoising | train" in card
    enc = Encoder.load(str(out))
    assert enc.prompt.texts[0] == BERT_TRAINING_TEMPLATES[0]
    assert enc.tokenize(["a dog"]).input_ids[0] == enc.prompt.templates[0].wrap(
        enc.tokenizer("a dog", add_special_tokens=False)["input_ids"]
    )
    trained = enc.encode(SENTENCES[:3])
    untrained = Encoder.load(str(tiny_bert), "prompt", prompt_template=BERT_TRAINING_TEMPLATES[0]).encode(
        SENTENCES[:3]
    )
    assert trained.shape == untrained.shape and not np.allclose(trained, untrained, atol=1e-4)


def test_prompt_training_with_sup_rows_and_a_custom_template(tiny_bert, tmp_path):
    from simcse.training.loop import train

    csv = tmp_path / "t.csv"
    csv.write_text("sent0,sent1,hard_neg\n" + "\n".join(f"{a},{b},{c}" for a, b, c in
                                                         zip(SENTENCES, SENTENCES[1:], SENTENCES[2:])) + "\n")  # fmt: skip
    result = train(train_config(tiny_bert, csv, tmp_path / "o", pooler="prompt", prompt_denoise="none",
                                prompt_template="[X] means [MASK] .", packed="off"))  # fmt: skip
    assert result.global_step == 4
    assert Encoder.load(str(tmp_path / "o")).prompt.texts == ["[X] means [MASK] ."]


@pytest.mark.parametrize("overrides, words", [
    ({"dropout_mask": "shared"}, "pooler prompt puts each view in its own template"),
    ({"compile": True}, "pooler prompt's template pass"),
    ({"pooler": "avg", "prompt_template": "[X] [MASK]"}, "prompt_template applies to pooler prompt"),
])  # fmt: skip
def test_combinations_that_cannot_work_are_refused_up_front(overrides, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(train_file="x.txt", **{"pooler": "prompt", **overrides}).validate()
    TrainConfig(train_file="x.txt", pooler="prompt", mlp_only_train=True).validate()  # the paper's setting


def test_a_template_that_does_not_fit_the_models_positions_is_refused(tiny_bert, tmp_path):
    from simcse.training.setup import build_model

    with pytest.raises(ConfigError, match="plus the prompt template makes"):
        build_model(train_config(tiny_bert, _txt(tmp_path), tmp_path / "o", pooler="prompt", max_seq_len=60))
