"""Discrete augmentations of the positive view, for the paper's Table 1 (option ``augment``).

Unsup SimCSE's positive is the same sentence under another dropout mask; these make it a changed sentence
instead (dropout still applies, unless ``dropout: 0``). Each one is a small function of (sentence, random
generator) on whitespace-separated words, and a spec composes them with ``+``:

- ``crop:R`` keeps one contiguous span of round((1 - R) * n) words (at least one);
- ``word_deletion:R`` deletes round(R * n) words chosen uniformly (at least one word is kept);
- ``delete_one_word`` deletes one uniformly chosen word (a one-word sentence is kept as it is).

The generator of a row is seeded by (seed, epoch, row index), so a view is the same in any thread, after a
resume, and on any number of processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from simcse.errors import ConfigError

Augmentation = Callable[[list[str], np.random.Generator], list[str]]


@dataclass(frozen=True)
class Crop:
    ratio: float

    def __call__(self, words: list[str], rng: np.random.Generator) -> list[str]:
        keep = max(1, round((1.0 - self.ratio) * len(words)))
        if keep >= len(words):
            return list(words)
        start = int(rng.integers(0, len(words) - keep + 1))
        return words[start : start + keep]


@dataclass(frozen=True)
class WordDeletion:
    ratio: float

    def __call__(self, words: list[str], rng: np.random.Generator) -> list[str]:
        drop = min(round(self.ratio * len(words)), len(words) - 1)
        if drop <= 0:
            return list(words)
        gone = set(rng.choice(len(words), size=drop, replace=False).tolist())
        return [w for i, w in enumerate(words) if i not in gone]


@dataclass(frozen=True)
class DeleteOneWord:
    def __call__(self, words: list[str], rng: np.random.Generator) -> list[str]:
        if len(words) <= 1:
            return list(words)
        gone = int(rng.integers(0, len(words)))
        return words[:gone] + words[gone + 1 :]


_WITH_RATIO = {"crop": Crop, "word_deletion": WordDeletion}
_PLAIN = {"delete_one_word": DeleteOneWord}
NAMES = (*(f"{n}:R" for n in _WITH_RATIO), *_PLAIN)


def parse_augment(spec: str) -> list[Augmentation]:
    """``crop:0.1+delete_one_word`` -> the pieces, applied left to right; ``""`` -> none."""
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
            pieces.append(_WITH_RATIO[name](ratio))
        else:
            raise ConfigError(
                f"augment: unknown piece {part!r}; choose from {', '.join(NAMES)}, joined with +"
            )
    return pieces


def row_rng(seed: int, epoch: int, row: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, row])


def augmented(sentence: str, pieces: Sequence[Augmentation], rng: np.random.Generator) -> str:
    words = sentence.split()
    for piece in pieces:
        words = piece(words, rng)
    return " ".join(words)


POSITIVES = {"self": 0, "next_sentence": 1, "next_3_sentences": 3}


def neighbour(row: int, rows: int, window: int, rng: np.random.Generator) -> int:
    """The positive of the paper's next-sentence objectives (Table 2): one of the ``window`` rows after
    ``row``, chosen uniformly (consecutive lines of the corpus are neighbours); near the end of the file,
    where fewer follow, the rows before it stand in."""
    offset = int(rng.integers(1, window + 1))
    if row + offset < rows:
        return row + offset
    return max(row - offset, 0) if rows > 1 else row
