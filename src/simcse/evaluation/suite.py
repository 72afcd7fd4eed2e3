"""The evaluation run: which tasks (:mod:`simcse.evaluation.tasks`), which encoder, every distinct sentence
encoded once, then each task scored; :func:`evaluate` is a short sequence of those steps."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import torch

from simcse.core.errors import ConfigError, SimCSEError
from simcse.core.files import atomic_path
from simcse.evaluation import sts
from simcse.evaluation.tasks import Embed, Scoring, averages, kind_of, resolve_tasks
from simcse.evaluation.whitening import Whitening
from simcse.modeling.sentence_encoder import SentenceEncoder

__all__ = ["EmbeddingTable", "evaluate", "resolve_tasks"]
CLASSIFIERS = ("senteval", "lbfgs")


class EmbeddingTable:
    """Every distinct sentence encoded once; optional on-disk cache keyed by model and sentence set."""

    def __init__(
        self,
        encoder,
        sentences: Sequence[str],
        batch_size: int = 128,
        dtype: torch.dtype | None = None,
        cache_dir: str | Path | None = None,
        show_progress: bool = False,
    ):
        self.sentences = list(dict.fromkeys(sentences))
        self.index = {s: i for i, s in enumerate(self.sentences)}
        self.encode_seconds = 0.0
        cache_file = None
        if cache_dir is not None:
            digest = hashlib.sha256("\n".join(self.sentences).encode("utf-8")).hexdigest()[:16]
            precision = str(dtype).replace("torch.", "") if dtype else "float32"
            cache_file = Path(cache_dir) / f"{encoder.fingerprint()}-{precision}-{digest}.npy"
        if cache_file is not None and cache_file.exists():
            self.matrix = np.load(cache_file)
            if self.matrix.shape[0] != len(self.sentences):
                raise SimCSEError(f"{cache_file}: embedding cache does not match the sentences; delete it")
            return
        start = perf_counter()
        self.matrix = encoder.encode(
            self.sentences, batch_size=batch_size, dtype=dtype, show_progress=show_progress
        )
        self.encode_seconds = perf_counter() - start
        if cache_file is not None:
            with atomic_path(cache_file) as tmp, tmp.open("wb") as f:
                np.save(f, self.matrix)

    def __call__(self, sentences: Sequence[str]) -> np.ndarray:
        return self.matrix[[self.index[s] for s in sentences]]


def evaluate(
    model: str | Path | SentenceEncoder | None = None,
    tasks: str | Sequence[str] = "sts",
    mode: str = "test",
    aggregate: str = "all",
    data_dir: str | Path | None = None,
    batch_size: int = 128,
    dtype: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
    whiten: str | None = None,
    whiten_dim: int | None = None,
    pooler: str | None = None,
    seed: int = 1111,
    show_progress: bool = False,
    download: bool = True,
    classifier: str = "senteval",
    prompt_template: str | Sequence[str] | None = None,
    prompt_denoise: str | None = None,
    precision: str = "auto",
    backend: str = "torch",
) -> dict:
    """Evaluate a model: each distinct sentence encoded once (unnormalised), then each task scored.

    Args:
        model: an encoder object, a path or hub id, ``baseline:NAME[:SOURCE]``, or None (the embedded model).
        tasks: names or groups, a list or a comma string (:func:`~simcse.evaluation.tasks.resolve_tasks`).
        mode: ``test`` (the paper's), ``dev`` (dev splits; transfer: dev accuracy) or ``fasttest``.
        aggregate: STS12-16's subsets: ``all`` (pooled, the paper's), ``mean`` or ``wmean`` (SentEval's).
        data_dir: holds ``senteval/`` (None: ``$SIMCSE_DATA_DIR``, else ``~/.cache/simcse/data``).
        batch_size: sentences per encoding batch.
        dtype: a torch dtype to encode in; overrides ``precision``.
        cache_dir: an embedding cache keyed by model fingerprint, precision and sentences (None: none).
        whiten: fit whitening on a text file (a sentence a line) or ``"self"`` (these sentences); None: off.
        whiten_dim: keep the first k whitened dimensions (None: all).
        pooler: overrides the pooler of a model loaded here (:func:`~simcse.modeling.loading.load_encoder`).
        seed: the transfer classifiers' seed (and their folds').
        show_progress: a tqdm bar over the encoding.
        download: fetch the SentEval data when missing (else a MissingDataError says how).
        classifier: transfer tasks: ``senteval`` (SentEval's, as the paper) or ``lbfgs`` (deterministic).
        prompt_template: pooler prompt (PromptBERT), a model loaded here: its template(s).
        prompt_denoise: pooler prompt, a model loaded here: none | train | always.
        precision: auto | fp32 | bf16 | fp16 unless ``dtype`` is given; the result's ``precision`` says which.
        backend: ``torch``, or ``onnx`` / ``openvino`` for an exported graph's directory.

    Returns:
        ``{"model", "pooler", "mode", "aggregate", "whiten", "whiten_dim", "tasks", "avg", "n_sentences",
            "seconds"}`` (and ``precision`` and the prompt options when they apply)."""
    from simcse.data.download import ensure_dataset

    if aggregate not in sts.AGGREGATES:
        raise ConfigError(f"aggregate must be one of {', '.join(sts.AGGREGATES)}, got {aggregate!r}")
    if classifier not in CLASSIFIERS:
        raise ConfigError(f"classifier must be senteval or lbfgs, got {classifier!r}")
    task_list = resolve_tasks(tasks, mode)
    senteval_dir = ensure_dataset("senteval", data_dir, download=download)
    timings: dict[str, float] = {}
    start = perf_counter()
    data = {task: kind_of(task).load(task, senteval_dir, mode) for task in task_list}
    encoder = _encoder(model, pooler, backend, precision, prompt_template, prompt_denoise)
    timings["load"] = perf_counter() - start
    dtype, precision_line = encoder.encoding_precision(precision, dtype)
    scoring = Scoring(aggregate, mode, seed, classifier)
    if encoder.pair_similarity is not None:  # WMD / WRD: pairs of word-vector sets, no sentence vectors
        return _evaluate_pairs(encoder, data, scoring, whiten, timings)
    sentences = [s for task, d in data.items() for s in kind_of(task).sentences(d)]
    corpus = _corpus(whiten)
    per_task = encoder.fit_postprocess  # SIF / uSIF / BERT-flow: fitted on each task's sentences
    table = EmbeddingTable(
        _Raw(encoder) if per_task else encoder,
        sentences + corpus,
        batch_size,
        dtype,
        cache_dir,
        show_progress,
    )
    timings["encode"] = table.encode_seconds
    whitening = (
        None if whiten is None else Whitening.fit(table(corpus) if corpus else table.matrix, whiten_dim)
    )
    start = perf_counter()
    results = {}
    for task, task_data in data.items():
        kind = kind_of(task)
        embed = _embedder(table, whitening, per_task, kind.sentences(task_data))
        results[task] = kind.score(task_data, embed, scoring)
    timings["score"] = perf_counter() - start
    return {
        "model": encoder.source,
        "pooler": encoder.pooler,
        **(encoder.prompt.describe() if encoder.prompt is not None else {}),
        "mode": mode,
        "aggregate": aggregate,
        "whiten": whiten,
        "whiten_dim": whiten_dim,
        "tasks": results,
        "avg": averages(results, mode),
        "n_sentences": len(table.sentences),
        "seconds": timings,
        **({"precision": precision_line} if precision_line else {}),
    }


def _encoder(
    model: Any,
    pooler: str | None,
    backend: str,
    precision: str,
    prompt_template: Any,
    prompt_denoise: str | None,
) -> SentenceEncoder:
    """A baseline (``baseline:NAME[:SOURCE]``), else :func:`~simcse.modeling.loading.load_encoder`'s."""
    from simcse.baselines.encoder import load_model_or_baseline

    options = {"prompt_template": prompt_template, "prompt_denoise": prompt_denoise}
    return load_model_or_baseline(model, pooler, backend, precision, **options)


def _corpus(whiten: str | None) -> list[str]:
    """The whitening corpus's sentences, when whitening is fitted on a file."""
    if whiten in (None, "self"):
        return []
    from simcse.data.sentence_files import read_corpus

    return read_corpus(whiten, "a whitening corpus")


def _embedder(
    table: EmbeddingTable, whitening: Whitening | None, fit: Any, task_sentences: list[str]
) -> Embed:
    """A task's embed function: the table's vectors, post-processed when the encoder fits per task (on the
    task's distinct sentences), then whitened when asked."""
    post = fit(table(list(dict.fromkeys(task_sentences)))) if fit is not None else None

    def embed(sentences: Sequence[str]) -> np.ndarray:
        x = table(sentences) if post is None else post(table(sentences))
        return whitening(x) if whitening is not None else x

    return embed


def _evaluate_pairs(
    encoder: SentenceEncoder, data: dict, scoring: Scoring, whiten: str | None, timings: dict
) -> dict:
    """STS scored by a pair-similarity baseline (no embeddings): the same result layout as :func:`evaluate`."""
    other = [t for t in data if t not in sts.STS_TASKS]
    if other or whiten is not None:
        raise ConfigError(
            f"{encoder.source} scores sentence pairs and has no sentence vector: evaluate it on "
            f"STS tasks only (not {', '.join(other) or '--whiten'})"
        )
    start = perf_counter()
    results = {
        task: sts.score_sts(d, None, scoring.aggregate, similarity=encoder.pair_similarity)
        for task, d in data.items()
    }
    timings["score"] = perf_counter() - start
    return {
        "model": encoder.source,
        "pooler": encoder.pooler,
        "mode": scoring.mode,
        "aggregate": scoring.aggregate,
        "whiten": None,
        "whiten_dim": None,
        "tasks": results,
        "avg": averages(results, scoring.mode),
        "n_sentences": 0,
        "seconds": timings,
    }


class _Raw:
    """An encoder whose ``encode`` is its raw vectors (the table of a per-task post-processed baseline)."""

    def __init__(self, encoder):
        self.encoder = encoder

    def encode(self, sentences, **kwargs):
        return self.encoder.raw(sentences, **kwargs)

    def fingerprint(self) -> str:
        return self.encoder.fingerprint() + "-raw"
