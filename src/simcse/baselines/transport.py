"""Word Mover's Distance (Kusner et al. 2015) and Word Rotator's Distance (Yokoi et al. 2020) as STS
similarity functions: a sentence is a set of word vectors, not one vector, and two sentences are as similar
as it is cheap to move one set onto the other (optimal transport: POT's exact ``ot.emd2``).

- ``wmd``: each distinct word weighted by its count (normalised bag of words), cost = Euclidean distance
  between word vectors; similarity = -WMD;
- ``wrd``: each word weighted by its vector's norm, cost = 1 - cosine between the vectors' directions;
  similarity = 1 - WRD.

A pair with a sentence that has no known word gets the lowest similarity of its batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from simcse.baselines.word_vectors import WordVectors
from simcse.core.errors import ConfigError
from simcse.modeling.sentence_encoder import SentenceEncoder

TRANSPORTS = ("wmd", "wrd")


def _ot():
    try:
        import ot
    except ImportError:
        raise ConfigError("wmd and wrd need POT (optimal transport): pip install pot") from None
    return ot


class TransportSimilarity(SentenceEncoder):
    """WMD or WRD (``name``) over ``vectors``: it scores sentence pairs (:meth:`pair_similarity`) and has no
    sentence vector.
    """

    def __init__(self, name: str, vectors: WordVectors):
        if name not in TRANSPORTS:
            raise ConfigError(f"unknown transport baseline {name!r}; choose wmd or wrd")
        self.name, self.vectors = name, vectors
        self.pooler = name
        self.source = f"baseline:{name}:{vectors.source}"
        self.ot = _ot()

    def _bag(self, sentence: str) -> tuple[np.ndarray, np.ndarray] | None:
        tokens = self.vectors.tokens(sentence)
        if not tokens:
            return None
        counts = Counter(tokens)
        words = list(counts)
        v = self.vectors.vectors(words).astype(np.float64)
        if self.name == "wmd":
            weights = np.array([counts[w] for w in words], dtype=np.float64)
        else:
            weights = np.linalg.norm(v, axis=1) * np.array([counts[w] for w in words])
        total = weights.sum()
        if total <= 0:
            return None
        return v, weights / total

    def distance(self, a: str, b: str) -> float | None:
        """The optimal-transport distance between two sentences' bags of words; None when either has no known
        word."""
        bag_a, bag_b = self._bag(a), self._bag(b)
        if bag_a is None or bag_b is None:
            return None
        (va, wa), (vb, wb) = bag_a, bag_b
        if self.name == "wmd":
            cost = np.linalg.norm(va[:, None, :] - vb[None, :, :], axis=-1)
        else:
            ua = va / np.maximum(np.linalg.norm(va, axis=1, keepdims=True), 1e-12)
            ub = vb / np.maximum(np.linalg.norm(vb, axis=1, keepdims=True), 1e-12)
            cost = 1.0 - ua @ ub.T
        return float(self.ot.emd2(wa, wb, cost))

    def pair_similarity(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """The similarity of each pair ``(a[i], b[i])`` (-WMD or 1 - WRD); a pair with an empty bag gets the
        lowest similarity of the batch (0 for all when every pair has one)."""
        distances = [self.distance(x, y) for x, y in zip(a, b)]
        sims = np.array([np.nan if d is None else (-d if self.name == "wmd" else 1.0 - d) for d in distances])
        if np.isnan(sims).all():
            return np.zeros(len(sims))
        return np.where(np.isnan(sims), np.nanmin(sims), sims)

    def encode(self, sentences: Sequence[str], **_) -> np.ndarray:
        """Always raises ConfigError: a transport baseline has no sentence vector (use it on STS tasks)."""
        raise ConfigError(
            f"baseline {self.name} compares sentences as sets of word vectors and has no sentence "
            "vector: use it on STS tasks"
        )

    def fingerprint(self) -> str:
        """The baseline's name and its word vectors' fingerprint."""
        return f"{self.name}-{self.vectors.fingerprint()}"
