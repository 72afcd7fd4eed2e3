"""Whitening post-processing (Su et al., 2021, "BERT-whitening"), a baseline in the SimCSE paper.

Fit the mean and a whitening matrix on a corpus, then map every embedding x to (x - mu) W[:, :k].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simcse.core.errors import ConfigError


@dataclass
class Whitening:
    """A fitted whitening: ``mean`` (1, dim) and ``matrix`` (dim, k); calling it maps x to (x - mean) @
    matrix, as float32."""

    mean: np.ndarray
    matrix: np.ndarray

    @classmethod
    def fit(cls, embeddings: np.ndarray, dim: int | None = None) -> Whitening:
        """Fit on ``embeddings`` (at least two rows): the SVD of their covariance, ``matrix`` = U / sqrt(S),
        keeping the first ``dim`` columns (None: all). Raises ValueError for fewer than two rows, and
        ConfigError (the ``--whiten-dim`` a user gave) for ``dim`` outside 1..dim."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError("whitening needs at least two embeddings")
        if dim is not None and not 0 < dim <= x.shape[1]:
            raise ConfigError(f"--whiten-dim must be in 1..{x.shape[1]} (the embedding size), got {dim}")
        mean = x.mean(0, keepdims=True)
        cov = np.cov((x - mean).T)
        u, s, _ = np.linalg.svd(cov)
        matrix = u / np.sqrt(np.maximum(s, 1e-12))
        return cls(mean, matrix[:, :dim] if dim else matrix)

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        return ((np.asarray(embeddings, dtype=np.float64) - self.mean) @ self.matrix).astype(np.float32)
