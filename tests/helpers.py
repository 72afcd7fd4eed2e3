"""Plain helpers shared by the tests (fixtures live in conftest.py): tiny random BERT models built from a
config (no download), a few sentences, the CLI runner and its one-line-error check, a small training config.
Test files import from here, never from each other."""

from __future__ import annotations

import string
from pathlib import Path

import torch

from simcse.cli import main
from simcse.training.config import TrainConfig

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
    path: Path,
    layers: int = 2,
    hidden: int = 32,
    seed: int = 0,
    dropout: float = 0.1,
    init_range: float = 0.02,
    positions: int = 64,
) -> Path:
    """A random BERT. With the usual ``init_range`` 0.02 all its sentence embeddings have cosine ~1; 0.5
    spreads them (off-diagonal cosines about -0.1 to 0.8), for tests whose gradients must not be tiny."""
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
        max_position_embeddings=positions,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        initializer_range=init_range,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(path))
    return path


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


QUIET = ["--dev_eval", "false", "--final_eval", "none", "--progress_bar", "false", "--tensorboard", "false"]


def run(capsys, args: list[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as e:  # argparse: --help, usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *names: str) -> str:
    assert code == 2
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("simcse: error: ")
    for name in names:
        assert name in err, (name, err)
    return err


def train_config(model, train_file, out, **overrides) -> TrainConfig:
    values = {"model_name_or_path": str(model), "train_file": str(train_file), "output_dir": str(out),
              "batch_size": 4, "max_seq_len": 16, "max_steps": 4, "dev_eval": False, "final_eval": "none",
              "save_steps": 0, "progress_bar": False, "tensorboard": False, "logging_steps": 1}  # fmt: skip
    return TrainConfig(**{**values, **overrides})


def as_if_killed_before_the_final_model(out: Path) -> None:
    """Make a finished run's directory look like one killed while writing its final model (its checkpoints
    stay), so that ``train(..., resume=True)`` continues from the last checkpoint."""
    import json

    meta = json.loads((out / "simcse.json").read_text())
    del meta["finished"]
    (out / "simcse.json").write_text(json.dumps(meta))
    (out / "model.safetensors").unlink()


def training_encoder(path, pooler: str = "cls", mlp_only_train: bool = False, **options):
    """An Encoder as a run builds one (a freshly initialised MLP with pooler cls), from a model directory."""
    from simcse.modeling.encoder import Encoder
    from simcse.modeling.model_dir import read_backbone

    files = read_backbone(str(path), attn_implementation=options.pop("attn_implementation", "sdpa"))
    return Encoder.from_backbone(files, pooler, mlp_only_train, **options)


def head_lines(source: Path, target: Path, lines: int, whole: tuple[str, ...] = ()) -> Path:
    """A copy of the data tree ``source`` at ``target`` with every file cut to its first ``lines`` lines
    (the folders named in ``whole`` linked as they are): the same formats and names, seconds to evaluate.
    """
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if not path.is_file() or rel.parts[0] in whole:
            continue
        out = target / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:lines]))
    for name in whole:
        if (source / name).exists():
            (target / name).symlink_to((source / name).resolve())
    return target
