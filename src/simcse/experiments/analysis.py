"""Anisotropy and similarity structure of encoders (the paper's Section 7 and Figure 3), for
``simcse analyze MODEL...``:

- the singular-value spectrum of the (centred) embedding matrix of a sentence set, normalised by the largest
  value, on a log scale; with the share of variance in the top k directions and the average cosine of two
  different sentences (anisotropy: a narrow cone has a high average cosine and a steep spectrum);
- the density of the cosine similarity of STS-B test pairs grouped by gold score (0-1, 1-2, ..., 4-5), one
  panel per model (a good encoder separates the groups; the paper's Figure 3);
- the nearest neighbours of a few query sentences in a corpus (the paper's retrieval examples), as markdown.

Everything is written into one directory: ``analysis.json``, ``analysis.md``, ``spectrum.png/.svg``,
``similarity-density.png/.svg``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simcse.core.errors import SimCSEError
from simcse.core.files import write_text_atomic

GOLD_BINS = ((0, 1), (1, 2), (2, 3), (3, 4), (4, 5))
TOP_K = (1, 10, 50)
DEFAULT_QUERIES = (
    "a man is playing a guitar .",
    "a woman is slicing an onion .",
    "the stock market fell sharply .",
)


@dataclass
class ModelAnalysis:
    """One encoder's figures: the normalised singular values, the top-k variance shares, the mean cosine of
    two different sentences, the STS-B test pairs' cosines by gold-score bin, and each query's nearest
    neighbours."""

    name: str
    singular_values: np.ndarray  # normalised: the largest is 1
    top_share: dict[int, float]  # share of variance in the top k directions
    mean_cosine: float  # two different sentences
    cosine_by_gold: dict[str, np.ndarray]
    neighbours: dict[str, list[tuple[str, float]]]

    def summary(self) -> dict[str, Any]:
        """The figures as JSON-ready data (each gold bin as its count and mean cosine)."""
        return {
            "name": self.name,
            "mean_cosine": self.mean_cosine,
            "top_share": {str(k): v for k, v in self.top_share.items()},
            "singular_values": [float(v) for v in self.singular_values],
            "cosine_by_gold": {
                k: {"n": int(len(v)), "mean": float(v.mean()) if len(v) else None}
                for k, v in self.cosine_by_gold.items()
            },
            "neighbours": {q: [[s, c] for s, c in hits] for q, hits in self.neighbours.items()},
        }


# singular values below this share of the largest are float32 rounding of a rank-deficient matrix (more
# dimensions than sentences, or a collapsed direction): the spectrum plot stops there
NUMERICAL_ZERO = 1e-6


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def spectrum(embeddings: np.ndarray) -> tuple[np.ndarray, dict[int, float]]:
    """Normalised singular values of the centred matrix, and the variance share of the top k."""
    centred = embeddings - embeddings.mean(0, keepdims=True)
    values = np.linalg.svd(centred.astype(np.float64), compute_uv=False)
    variance = values**2
    total = variance.sum()
    share = {k: float(variance[:k].sum() / total) if total > 0 else 1.0 for k in TOP_K if k <= len(values)}
    return values / values[0] if values[0] > 0 else values, share


def mean_cosine(embeddings: np.ndarray) -> float:
    """Average cosine over all pairs of different rows (exact, from the sum of unit vectors)."""
    unit = _unit(embeddings.astype(np.float64))
    n = len(unit)
    if n < 2:
        raise SimCSEError("the anisotropy needs at least two sentences")
    total = unit.sum(0)
    return float((total @ total - n) / (n * (n - 1)))


def cosine_by_gold(a: np.ndarray, b: np.ndarray, gold: np.ndarray) -> dict[str, np.ndarray]:
    """The cosine of each pair ``(a[i], b[i])``, grouped by gold-score bin (:data:`GOLD_BINS`, each half-open
    but the last, which includes 5)."""
    cos = (_unit(a) * _unit(b)).sum(1)
    groups = {}
    for low, high in GOLD_BINS:
        inside = (gold >= low) & ((gold < high) if high < 5 else (gold <= high))
        groups[f"{low}-{high}"] = cos[inside]
    return groups


def nearest(
    queries: np.ndarray, corpus: np.ndarray, sentences: list[str], k: int
) -> list[list[tuple[str, float]]]:
    """Each query row's ``k`` most cosine-similar rows of ``corpus`` as (sentence, cosine), best first."""
    scores = _unit(queries) @ _unit(corpus).T
    out = []
    for row in scores:
        top = np.argsort(-row, kind="stable")[:k]
        out.append([(sentences[i], float(row[i])) for i in top])
    return out


def analyze_model(
    encoder: Any,
    name: str,
    sentences: list[str],
    pairs: tuple[list[str], list[str], np.ndarray],
    corpus: list[str],
    queries: list[str],
    k: int = 5,
    batch_size: int = 128,
) -> ModelAnalysis:
    """One encoder's figures (``encoder.encode(list) -> (n, dim)``). Every distinct sentence (the spectrum's,
    the pairs', the queries', the corpus's) is encoded once."""
    a, b, gold = pairs
    distinct = list(dict.fromkeys([*sentences, *a, *b, *queries, *corpus]))
    index = {s: i for i, s in enumerate(distinct)}
    table = encoder.encode(distinct, batch_size=batch_size)

    def embed(batch: list[str]) -> np.ndarray:
        return table[[index[s] for s in batch]]

    matrix = embed(sentences)
    values, share = spectrum(matrix)
    by_gold = cosine_by_gold(embed(a), embed(b), gold)
    corpus = list(dict.fromkeys(corpus))  # a sentence the corpus holds twice is one neighbour, once
    hits = nearest(embed(queries), embed(corpus), corpus, k)
    return ModelAnalysis(name, values, share, mean_cosine(matrix), by_gold, dict(zip(queries, hits)))


def markdown(analyses: list[ModelAnalysis], n_sentences: int) -> str:
    """``analysis.md``: the anisotropy table, the cosine-by-gold table and the nearest-neighbour lists of
    every model."""
    lines = [
        f"## Anisotropy ({n_sentences} sentences)",
        "",
        "| Model | mean cosine | " + " | ".join(f"top-{k} variance" for k in TOP_K) + " |",
        "|---|---|" + "---|" * len(TOP_K),
    ]
    for a in analyses:
        shares = " | ".join(f"{a.top_share[k]:.3f}" if k in a.top_share else "-" for k in TOP_K)
        lines.append(f"| {a.name} | {a.mean_cosine:.3f} | {shares} |")
    lines += [
        "",
        "## Cosine of STS-B test pairs by gold score (mean, n)",
        "",
        "| Model | " + " | ".join(f"{lo}-{hi}" for lo, hi in GOLD_BINS) + " |",
        "|---|" + "---|" * len(GOLD_BINS),
    ]
    for a in analyses:
        cells = [f"{v.mean():.3f} ({len(v)})" if len(v) else "-" for v in a.cosine_by_gold.values()]
        lines.append(f"| {a.name} | " + " | ".join(cells) + " |")
    lines += ["", "## Nearest neighbours", ""]
    for query in analyses[0].neighbours:
        lines += [
            f"Query: *{query}*",
            "",
            "| rank | " + " | ".join(a.name for a in analyses) + " |",
            "|---|" + "---|" * len(analyses),
        ]
        for rank in range(len(analyses[0].neighbours[query])):
            cells = [f"{a.neighbours[query][rank][0]} ({a.neighbours[query][rank][1]:.3f})" for a in analyses]
            lines.append(f"| {rank + 1} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _plots(analyses: list[ModelAnalysis], out: Path) -> list[Path]:
    from simcse.experiments.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for a in analyses:
        shown = a.singular_values[
            a.singular_values >= NUMERICAL_ZERO
        ]  # the rest is rounding, not a direction
        ax.plot(np.arange(1, len(shown) + 1), shown, label=f"{a.name} (mean cos {a.mean_cosine:.2f})")
    ax.set_yscale("log")
    ax.set_xlabel("direction (by singular value)")
    ax.set_ylabel("singular value / largest (log scale)")
    ax.set_title("Singular-value spectrum of the embeddings", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = save_figure(fig, out / "spectrum")
    plt.close(fig)
    fig, axes = plt.subplots(1, len(analyses), figsize=(4.2 * len(analyses), 3.4), squeeze=False, sharey=True)
    for ax, a in zip(axes[0], analyses):
        grid = np.linspace(-1, 1, 201)
        for group, values in a.cosine_by_gold.items():
            if len(values) < 2:
                continue
            ax.plot(grid, _density(values, grid), label=f"gold {group}")
        ax.set_title(a.name, fontsize=9)
        ax.set_xlabel("cosine similarity")
        ax.set_xlim(-1, 1)
        ax.set_xticks([-1.0, -0.5, 0.0, 0.5, 1.0])
    axes[0][0].set_ylabel("density")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    paths += save_figure(fig, out / "similarity-density")
    plt.close(fig)
    return paths


def _density(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A Gaussian kernel density estimate (scipy's, Scott's bandwidth)."""
    from scipy.stats import gaussian_kde

    if np.ptp(values) == 0:
        return np.where(np.isclose(grid, values[0], atol=0.01), 1.0, 0.0)
    return gaussian_kde(values)(grid)


def write_analysis(
    analyses: list[ModelAnalysis], out: Path, n_sentences: int, plots: bool = True
) -> list[Path]:
    """Write ``analysis.json`` and ``analysis.md`` (and the figures, with ``plots``) into ``out``; the files
    written."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, text in (
        ("analysis.json", json.dumps([a.summary() for a in analyses], indent=2) + "\n"),
        ("analysis.md", markdown(analyses, n_sentences)),
    ):
        files.append(write_text_atomic(out / name, text))
    if plots:
        files += _plots(analyses, out)
    return files
