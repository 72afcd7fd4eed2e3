"""The prompt pooler (PromptBERT): the template's [MASK] position, truncation of the sentence only, template
denoising (the template alone at the positions it has around the sentence), bad templates, save / load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simcse.core.errors import ConfigError, SimCSEError
from simcse.modeling.encoder import Encoder
from simcse.modeling.prompt import Prompt
from simcse.modeling.prompt_templates import BERT_TRAINING_TEMPLATES, TRAINING_FREE_TEMPLATE
from simcse.modeling.sentence_encoder import pad_batch
from simcse.training.config import TrainConfig
from tests.helpers import SENTENCES, assert_one_line_error, make_tiny_bert, run, training_encoder

TEMPLATE = 'This sentence : "[X]" means [MASK] .'


@pytest.fixture(scope="module")
def spread_bert(tmp_path_factory):
    """Weights large enough that the [MASK] states depend visibly on the positions and the sentence."""
    return make_tiny_bert(tmp_path_factory.mktemp("prompt-bert"), init_range=0.5, seed=5)


def _tokens(enc, text):
    return enc.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_the_sentence_goes_between_the_templates_tokens_and_the_mask_position_follows(tiny_bert):
    enc = Encoder.load(str(tiny_bert), "prompt", prompt_template=TEMPLATE)
    tok = enc.tokenizer
    sentence = "a man is playing a guitar"
    ids = enc.tokenize([sentence]).input_ids[0]
    before, after = _tokens(enc, 'This sentence : "'), _tokens(enc, '" means [MASK] .')
    assert ids == [tok.cls_token_id, *before, *_tokens(enc, sentence), *after, tok.sep_token_id]
    length = len(_tokens(enc, sentence))
    template = torch.zeros(1, dtype=torch.long)
    position = enc.prompt.mask_positions(torch.tensor([length]), template)
    assert int(position) == ids.index(tok.mask_token_id) == len(ids) - 3  # [MASK] . [SEP]


def test_a_mask_token_inside_the_sentence_is_not_taken_for_the_templates(tiny_bert):
    enc = Encoder.load(str(tiny_bert), "prompt", prompt_template=TEMPLATE)
    ids = enc.tokenize(["a [MASK] plays"]).input_ids[0]
    mask_id = enc.tokenizer.mask_token_id
    assert ids.count(mask_id) == 2
    batch = pad_batch([ids], 0)
    lengths = enc.prompt.sentence_lengths(batch["attention_mask"], torch.zeros(1, dtype=torch.long))
    assert int(enc.prompt.mask_positions(lengths, torch.zeros(1, dtype=torch.long))) == len(ids) - 3


def test_a_mask_before_the_sentence_stays_where_the_template_puts_it(tiny_bert):
    enc = Encoder.load(str(tiny_bert), "prompt", prompt_template="[MASK] : [X]")
    for sentence in ("a dog", "a man is playing a guitar in the park"):
        ids = enc.tokenize([sentence]).input_ids[0]
        assert ids[1] == enc.tokenizer.mask_token_id
        assert enc.prompt.templates[0].mask_position(len(_tokens(enc, sentence))) == 1


def test_a_long_sentence_is_truncated_and_the_template_survives(tiny_bert):
    enc = Encoder.load(str(tiny_bert), "prompt", prompt_template=TEMPLATE)
    t = enc.prompt.templates[0]
    long = " ".join(["the old man said no"] * 20)
    ids = enc.tokenize([long], max_length=t.length + 5).input_ids[0]
    assert len(ids) == t.length + 5
    assert ids == t.wrap(_tokens(enc, long)[:5])  # only the sentence lost tokens
    assert ids[t.mask_position(5)] == enc.tokenizer.mask_token_id
    # at the model's own limit (64 positions) too: the whole sequence fits and ends with the template
    ids = enc.tokenize([long]).input_ids[0]
    assert len(ids) == enc.max_length and ids[-len(t.after) - 1 : -1] == list(t.after)
    assert enc.encode([long]).shape == (1, enc.dim)
    with pytest.raises(SimCSEError, match="leaves no room for the sentence"):
        enc.tokenize(["a dog"], max_length=t.length)


def test_the_template_alone_keeps_the_position_ids_it_has_around_the_sentence(tiny_bert):
    enc = Encoder.load(str(tiny_bert), "prompt", prompt_template=TEMPLATE)
    t = enc.prompt.templates[0]
    length = 7
    inputs = enc.prompt.template_inputs([(0, length), (0, 0)], torch.device("cpu"))
    full = list(range(t.length + length))  # the positions of the template tokens in the full sequence
    kept = full[: t.sentence_start] + full[t.sentence_start + length :]
    assert inputs["position_ids"][0].tolist() == kept
    assert inputs["position_ids"][1].tolist() == list(range(t.length))
    assert inputs["input_ids"][0].tolist() == t.wrap([])
    # the [MASK] of the template alone sits at the position id the sentence's [MASK] has
    at = int(inputs["mask_positions"][0])
    assert inputs["input_ids"][0, at] == enc.tokenizer.mask_token_id
    assert int(inputs["position_ids"][0, at]) == t.mask_position(length)


def _last(backbone, ids, position_ids=None):
    ids = torch.tensor([ids])
    with torch.no_grad():
        return backbone(
            input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=position_ids
        ).last_hidden_state[0]


@pytest.mark.parametrize("packed", [False, True])
def test_denoised_embedding_is_the_raw_mask_state_minus_the_templates(spread_bert, packed):
    raw = Encoder.load(str(spread_bert), "prompt", prompt_template=TEMPLATE, packed=packed)
    denoised = Encoder.load(str(spread_bert), "prompt", prompt_template=TEMPLATE, prompt_denoise="always",
                            packed=packed)  # fmt: skip
    t = raw.prompt.templates[0]
    sentences = ["a man is playing a guitar", "two dogs run", "a man is playing a guitar"]
    got_raw, got_denoised = raw.encode(sentences), denoised.encode(sentences)
    backbone = raw.backbone.eval()
    for i, sentence in enumerate(sentences):
        s = _tokens(raw, sentence)
        mask_state = _last(backbone, t.wrap(s))[t.mask_position(len(s))]
        steps = torch.arange(t.length)
        positions = (steps + len(s) * (steps >= t.sentence_start)).unsqueeze(0)
        alone = _last(backbone, t.wrap([]), positions)[t.mask_position(0)]
        np.testing.assert_allclose(got_raw[i], mask_state.numpy(), atol=1e-5)
        np.testing.assert_allclose(got_denoised[i], (mask_state - alone).numpy(), atol=1e-5)
        # the shift matters: the template at its own positions gives another state
        unshifted = _last(backbone, t.wrap([]))[t.mask_position(0)]
        assert not torch.allclose(alone, unshifted, atol=1e-3)


def _byte_level_alphabet() -> list[str]:
    """GPT-2's byte-to-character table (RoBERTa's byte-level BPE alphabet)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    """A random RoBERTa whose byte-level tokenizer has no merges: <mask> and position ids from padding_idx + 1."""
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    path = tmp_path_factory.mktemp("prompt-roberta")
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *_byte_level_alphabet(), "<mask>"])}
    (path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    RobertaTokenizer(str(path / "vocab.json"), str(path / "merges.txt")).save_pretrained(str(path))
    config = RobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=130, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, type_vocab_size=1, initializer_range=0.5)  # fmt: skip
    torch.manual_seed(4)
    RobertaModel(config).save_pretrained(str(path))
    return path


@pytest.mark.parametrize("packed", [False, True])
def test_roberta_gets_its_mask_token_and_its_position_offset_in_the_denoising_pass(tiny_roberta, packed):
    template = "This sentence : '[X]' means [MASK] ."
    enc = Encoder.load(str(tiny_roberta), "prompt", prompt_template=template, prompt_denoise="always",
                       packed=packed)  # fmt: skip
    t = enc.prompt.templates[0]
    assert t.head == (0,) and t.tail == (2,) and enc.prompt.position_offset == 2
    sentence = "a man plays"
    s = _tokens(enc, sentence)
    ids = enc.tokenize([sentence]).input_ids[0]
    assert ids == t.wrap(s) and ids[t.mask_position(len(s))] == enc.tokenizer.mask_token_id
    backbone = enc.backbone.eval()
    mask_state = _last(backbone, ids)[t.mask_position(len(s))]  # RoBERTa's own positions: 2, 3, ...
    steps = torch.arange(t.length)
    positions = (2 + steps + len(s) * (steps >= t.sentence_start)).unsqueeze(0)
    alone = _last(backbone, t.wrap([]), positions)[t.mask_position(0)]
    np.testing.assert_allclose(enc.encode([sentence])[0], (mask_state - alone).numpy(), atol=1e-5)


def test_train_denoising_subtracts_in_training_mode_only(spread_bert):
    enc = training_encoder(str(spread_bert), "prompt", prompt_template=TEMPLATE, prompt_denoise="train")
    always = Encoder.load(str(spread_bert), "prompt", prompt_template=TEMPLATE, prompt_denoise="always")
    plain = Encoder.load(str(spread_bert), "prompt", prompt_template=TEMPLATE)
    for module in (enc, always):
        for m in module.backbone.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    batch = pad_batch(enc.tokenize(SENTENCES[:3]).input_ids, 0)
    enc.train()
    trained = enc(**batch)
    assert trained.requires_grad  # the template pass is part of the graph
    with torch.no_grad():
        assert torch.allclose(trained, always(**batch), atol=1e-5)
    np.testing.assert_allclose(enc.encode(SENTENCES[:3]), plain.encode(SENTENCES[:3]), atol=1e-6)


def test_each_sequence_gets_its_own_templates_mask_and_bias(spread_bert):
    enc = Encoder.load(str(spread_bert), "prompt", prompt_template=list(BERT_TRAINING_TEMPLATES),
                       prompt_denoise="always")  # fmt: skip
    second = Encoder.load(str(spread_bert), "prompt", prompt_template=BERT_TRAINING_TEMPLATES[1],
                          prompt_denoise="always")  # fmt: skip
    sentence = ["a boy plays with a red ball"]
    ids = [enc.prompt.templates[t].wrap(_tokens(enc, sentence[0])) for t in (0, 1)]
    batch = pad_batch(ids, 0)
    with torch.no_grad():
        out = enc(**batch, template=torch.tensor([0, 1]))
    np.testing.assert_allclose(out[0].numpy(), enc.encode(sentence)[0], atol=1e-5)
    np.testing.assert_allclose(out[1].numpy(), second.encode(sentence)[0], atol=1e-5)


@pytest.mark.parametrize("template, words", [
    ("This sentence means [MASK] .", "[X] is missing"),
    ('This "[X]" means [MASK] and [MASK] .', "[MASK] appears 2 times"),
    ("[X] [X]", "[X] appears 2 times and [MASK] is missing"),
    ("a || b [X] [MASK] || [X] [MASK]", "3 templates"),
])  # fmt: skip
def test_bad_templates_are_refused_in_one_line(tiny_bert, template, words):
    with pytest.raises(
        ConfigError, match=f"prompt_template.*{words.replace('[', '.').replace(']', '.')}"
    ) as e:
        TrainConfig(train_file="x.txt", pooler="prompt", prompt_template=template).validate()
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="prompt_template") as e:
        Encoder.load(str(tiny_bert), "prompt", prompt_template=template)
    assert "\n" not in str(e.value)


def test_prompt_options_need_the_prompt_pooler_and_a_mask_token(tiny_bert):
    with pytest.raises(ConfigError, match="prompt_template applies to pooler prompt"):
        TrainConfig(train_file="x.txt", pooler="avg", prompt_template=TEMPLATE).validate()
    with pytest.raises(ConfigError, match="prompt_denoise must be one of none, train, always"):
        TrainConfig(train_file="x.txt", pooler="prompt", prompt_denoise="yes").validate()
    with pytest.raises(SimCSEError, match="apply to pooler prompt only"):
        Encoder.load(str(tiny_bert), "avg", prompt_template=TEMPLATE)
    tokenizer = Encoder.load(str(tiny_bert), "avg").tokenizer
    tokenizer.mask_token = None
    with pytest.raises(SimCSEError, match="needs a tokenizer with a mask token"):
        Prompt(tokenizer, TEMPLATE)


def test_eval_cli_refuses_a_bad_template_in_one_line(tiny_bert, capsys, data_dir):
    code, _, err = run(capsys, ["eval", str(tiny_bert), "--pooler", "prompt", "--prompt-template", "no slots",
                                "--tasks", "STSBenchmark", "--mode", "dev", "--quiet", "--no-download"])  # fmt: skip
    assert_one_line_error(code, err, "prompt_template", "[X] is missing")


def test_save_and_load_round_trip_gives_identical_embeddings(spread_bert, tmp_path):
    enc = Encoder.load(str(spread_bert), "prompt", prompt_template=list(BERT_TRAINING_TEMPLATES),
                       prompt_denoise="always")  # fmt: skip
    enc.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "simcse.json").read_text())
    assert meta["pooler"] == "prompt" and meta["prompt_template"] == list(BERT_TRAINING_TEMPLATES)
    assert meta["prompt_denoise"] == "always"
    assert not (tmp_path / "m" / "modules.json").exists()  # sentence-transformers cannot express it
    again = Encoder.load(str(tmp_path / "m"))
    assert again.pooler == "prompt" and again.prompt.describe() == enc.prompt.describe()
    np.testing.assert_array_equal(again.encode(SENTENCES), enc.encode(SENTENCES))
    assert again.fingerprint() == enc.fingerprint()
    assert Encoder.load(str(tmp_path / "m"), prompt_denoise="none").fingerprint() != enc.fingerprint()
    from simcse.use.api import SimCSE

    np.testing.assert_allclose(SimCSE(str(tmp_path / "m")).encode(SENTENCES[:2], return_numpy=True),
                               enc.encode(SENTENCES[:2], normalize=True), atol=1e-6)  # fmt: skip


def test_the_default_template_is_the_papers_training_free_one(tiny_bert):
    assert Encoder.load(str(tiny_bert), "prompt").prompt.texts == [TRAINING_FREE_TEMPLATE]


@pytest.mark.parametrize("to", ["sentence-transformers", "hf"])
def test_export_refuses_the_prompt_pooler_and_writes_nothing(tiny_bert, tmp_path, to):
    from simcse.use.export import export_model

    with pytest.raises(SimCSEError, match="no sentence-transformers equivalent.*nothing was written"):
        export_model(Encoder.load(str(tiny_bert), "prompt"), tmp_path / "out", to)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
