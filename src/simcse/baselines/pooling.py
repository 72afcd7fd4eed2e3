"""Sentence vectors from word vectors, as the related work defines them:

- ``avg``: the mean of the word vectors;
- ``swem_max``, ``swem_concat`` (mean and max concatenated), ``swem_hier`` (the max over windows of the
  mean of ``window`` consecutive words; Shen et al. 2018);
- ``power_means``: the concatenation of the power means with p in {-inf, 1, +inf}, i.e. min, mean, max
  (Rücklé et al. 2018);
- ``sif``: the mean weighted by a / (a + p(w)) (a = 1e-3, p from ``wordfreq``), then the projection on the
  first singular vector of the sentence matrix removed (Arora et al. 2017);
- ``usif``: unsupervised SIF (Ethayarajh 2018) as its reference code computes it: a from the vocabulary's
  probabilities and the expected sentence length n = 11, weights a / (a/2 + p(w)), each dimension of the
  sentence's word vectors divided by its norm over the sentence, the weighted mean, then the projections on
  the top m = 5 singular vectors of the sentence matrix removed, each scaled by its share of the variance;
- ``abtt``: the mean of word vectors post-processed by All-but-the-Top (Mu & Viswanath 2018): the
  vocabulary's mean removed and its top D principal directions (D = dim / 100, at least 1) projected out.

A sentence with no known word is the zero vector (cosine 0 with everything).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

SIF_A = 1e-3


def average(v: np.ndarray) -> np.ndarray:
    """The mean of the word vectors ``v`` (words, dim)."""
    return v.mean(0)


def swem_max(v: np.ndarray) -> np.ndarray:
    """SWEM-max: the maximum of each dimension over the words."""
    return v.max(0)


def swem_concat(v: np.ndarray) -> np.ndarray:
    """SWEM-concat: the mean and the max over the words, concatenated (2 dim)."""
    return np.concatenate([v.mean(0), v.max(0)])


def swem_hier(v: np.ndarray, window: int = 3) -> np.ndarray:
    """SWEM-hier: the max over windows of ``window`` consecutive words of their mean (the plain mean when the
    sentence is no longer than a window).
    """
    if len(v) <= window:
        return v.mean(0)
    means = np.stack([v[i : i + window].mean(0) for i in range(len(v) - window + 1)])
    return means.max(0)


def power_means(v: np.ndarray) -> np.ndarray:
    """Power means with p in {-inf, 1, +inf}: min, mean and max concatenated (3 dim)."""
    return np.concatenate([v.min(0), v.mean(0), v.max(0)])


def weighted_average(v: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """SIF's weighted average: the sum of ``weights`` times the word vectors, divided by the number of words
    (as Arora et al.'s code divides by the count, not by the weights' sum)."""
    return (weights[:, None] * v).sum(0) / len(v)


def fit_first_component(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """SIF's common-component removal fitted on ``x``: y -> y - y u u^T, u the first right singular vector
    of (uncentred) x."""
    if len(x) < 2 or not np.any(x):
        return lambda y: y
    u = np.linalg.svd(x.astype(np.float64), full_matrices=False)[2][0]
    return lambda y: (y - np.outer(y @ u, u)).astype(np.float32)


def all_but_the_top(matrix: np.ndarray, directions: int | None = None) -> np.ndarray:
    """The vocabulary's vectors with their mean removed and the top ``directions`` principal components
    projected out (default dim / 100, at least 1)."""
    d = directions if directions is not None else max(1, matrix.shape[1] // 100)
    centred = matrix.astype(np.float64) - matrix.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    top = vt[:d]
    return (centred - (centred @ top.T) @ top).astype(np.float32)


POOLINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "avg": average,
    "swem_max": swem_max,
    "swem_concat": swem_concat,
    "swem_hier": swem_hier,
    "power_means": power_means,
}


def usif_a(probabilities: Sequence[float], n: int = 11) -> float:
    """uSIF's a: alpha is the share of the vocabulary likely to appear in a sentence of n words."""
    size = float(len(probabilities))
    threshold = 1 - (1 - 1 / size) ** n
    alpha = sum(1 for p in probabilities if p > threshold) / size
    if alpha == 0:
        raise ValueError(f"uSIF: no word of the vocabulary has a probability above {threshold:.3g}")
    return (1 - alpha) / (alpha * 0.5 * size)


def usif_sentence(v: np.ndarray, probabilities: np.ndarray, a: float) -> np.ndarray:
    """One sentence: every dimension scaled by 1 / its norm over the sentence's words (the reference's
    ``v_t * (1 / norm(v_t, axis=0))``), each word weighted by a / (a/2 + p(w)), the mean."""
    norms = np.linalg.norm(v, axis=0)
    scaled = v / np.where(norms > 0, norms, 1.0)
    weights = a / (0.5 * a + probabilities)
    return (weights[:, None] * scaled).mean(0)


def fit_weighted_components(x: np.ndarray, m: int = 5) -> Callable[[np.ndarray], np.ndarray]:
    """uSIF's piecewise common-component removal, fitted on the top m singular vectors of (uncentred) x."""
    m = min(m, len(x) - 1, x.shape[1])
    if m < 1 or not np.any(x):
        return lambda y: y
    _, values, vt = np.linalg.svd(x.astype(np.float64), full_matrices=False)
    values, vt = values[:m], vt[:m]
    shares = values**2 / (values**2).sum()

    def remove(y: np.ndarray) -> np.ndarray:
        out = y.astype(np.float64)
        for share, pc in zip(shares, vt):
            out = out - share * np.outer(out @ pc, pc)
        return out.astype(np.float32)

    return remove


def remove_weighted_components(x: np.ndarray, m: int = 5) -> np.ndarray:
    """``x`` minus uSIF's common components fitted on ``x`` itself (:func:`fit_weighted_components`)."""
    return fit_weighted_components(x, m)(x)
