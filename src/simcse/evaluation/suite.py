"""The evaluation run: which tasks, which splits, every distinct sentence encoded once, then scoring.

Modes follow SimCSE's evaluation script:
- ``test``: STS12-16 / STS-B / SICK-R test sets (the paper's table), transfer tasks with 10 folds;
- ``dev``: STS-B and SICK-R dev sets, transfer-task dev accuracy (5 folds);
- ``fasttest``: as ``test`` with 5 folds for the transfer tasks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from time import perf_counter

import numpy as np
import torch

from simcse.errors import ConfigError, SimCSEError
from simcse.evaluation import clustering, geometry, sts
from simcse.evaluation.whitening import Whitening

MODES = ("test", "dev", "fasttest")
TRANSFER_TASKS = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
TASK_GROUPS = {
    "sts": sts.STS_TASKS,
    "transfer": TRANSFER_TASKS,
    "full": sts.STS_TASKS + TRANSFER_TASKS,
    "geometry": ("geometry",),
    "clustering": clustering.builtin_tasks(),
}
ALL_TASKS = sts.STS_TASKS + TRANSFER_TASKS + ("geometry",) + clustering.builtin_tasks()


def resolve_tasks(spec: str | Sequence[str], mode: str = "test") -> list[str]:
    """``sts``, ``transfer``, ``full``, ``geometry``, ``clustering`` or a comma-separated list of task names
    (``cluster:NAME`` or ``cluster:FILE.csv`` for clustering)."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    tasks: list[str] = []
    for item in (i.strip() for i in items if i.strip()):
        if item in TASK_GROUPS:
            group = TASK_GROUPS[item]
            if mode == "dev" and item in ("sts", "full"):
                group = tuple(t for t in group if t not in sts.STS_YEARS)
            tasks.extend(group)
        elif clustering.is_clustering(item):
            tasks.append(item)  # a built-in set or a text,label file: checked when loaded
        elif item in ALL_TASKS:
            if mode == "dev" and item in sts.STS_YEARS:
                raise ConfigError(
                    f"{item} has no dev split; in dev mode use STSBenchmark and SICKRelatedness"
                )
            tasks.append(item)
        else:
            raise ConfigError(
                f"unknown task {item!r}; use sts, transfer, full, geometry, clustering, cluster:FILE.csv or "
                f"names from {', '.join(ALL_TASKS)}"
            )
    if not tasks:
        raise ConfigError("no tasks to evaluate")
    return list(dict.fromkeys(tasks))


def sts_split(mode: str) -> str:
    return "dev" if mode == "dev" else "test"


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
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(cache_file.name + ".tmp.npy")
            np.save(tmp, self.matrix)
            tmp.replace(cache_file)

    def __call__(self, sentences: Sequence[str]) -> np.ndarray:
        return self.matrix[[self.index[s] for s in sentences]]


def _load_tasks(tasks: list[str], senteval_dir: Path, mode: str) -> dict[str, object]:
    from simcse.evaluation import transfer

    loaded: dict[str, object] = {}
    for task in tasks:
        if clustering.is_clustering(task):
            loaded[task] = clustering.load_clustering_task(task, senteval_dir)
        elif task in sts.STS_TASKS:
            loaded[task] = sts.load_sts_task(task, senteval_dir, sts_split(mode))
        elif task == "geometry":
            loaded[task] = sts.load_sts_task("STSBenchmark", senteval_dir, sts_split(mode))
        else:
            loaded[task] = transfer.load_transfer_task(task, senteval_dir)
    return loaded


def _sentences_of(data: object) -> list[str]:
    if isinstance(data, sts.STSData):
        return data.sentences()
    if isinstance(data, clustering.ClusterData):
        return data.sentences
    from simcse.evaluation import transfer

    return transfer.transfer_sentences(data)


def score_geometry(data: sts.STSData, embed) -> dict:
    pairs = next(iter(data.subsets.values()))
    positive = pairs.gold > geometry.POSITIVE_THRESHOLD
    a = [s for s, p in zip(pairs.a, positive) if p]
    b = [s for s, p in zip(pairs.b, positive) if p]
    unique = list(dict.fromkeys(pairs.a + pairs.b))
    return {
        "align": geometry.alignment(embed(a), embed(b)),
        "uniform": geometry.uniformity(embed(unique)),
        "n_positive": len(a),
        "n_sentences": len(unique),
        "split": data.split,
    }


def read_corpus(path: str | Path, what: str = "a whitening corpus") -> list[str]:
    """A text file's non-empty lines, stripped; at least two (``what`` names the file's use in the error)."""
    lines = [line.strip() for line in sts.read_lines(Path(path))]
    corpus = [line for line in lines if line]
    if len(corpus) < 2:
        raise SimCSEError(f"{path}: {what} needs at least two non-empty lines")
    return corpus


def evaluate(
    model=None,
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
    """Evaluate a model (an :class:`~simcse.modeling.encoder.Encoder` or another object with its ``encode`` /
    ``fingerprint`` / ``source`` / ``pooler``, a path / hub id, or None for the embedded default) and return ``{"model", "mode", "aggregate", "tasks": {...}, "avg": {...}, "seconds": {...}}``.

    ``whiten`` is a text file (one sentence per line) to fit whitening on, or ``"self"`` to fit it on the
    evaluated sentences themselves; ``whiten_dim`` keeps the first k whitened dimensions. ``classifier``
    is the transfer tasks' classifier: ``senteval`` (SentEval's, as the paper) or ``lbfgs`` (deterministic).
    ``prompt_template`` / ``prompt_denoise``: pooler ``prompt``'s (PromptBERT; :mod:`simcse.modeling.prompt`).
    ``precision`` (auto | fp32 | bf16 | fp16) applies unless ``dtype`` is given (the result's ``precision``
    says which and why); ``backend`` onnx / openvino evaluates an exported graph (:mod:`simcse.backends`).
    """
    from simcse.download import ensure_dataset
    from simcse.modeling.encoder import Encoder

    if aggregate not in sts.AGGREGATES:
        raise ConfigError(f"aggregate must be one of {', '.join(sts.AGGREGATES)}, got {aggregate!r}")
    if classifier not in ("senteval", "lbfgs"):
        raise ConfigError(f"classifier must be senteval or lbfgs, got {classifier!r}")
    task_list = resolve_tasks(tasks, mode)
    senteval_dir = ensure_dataset("senteval", data_dir, download=download)
    timings: dict[str, float] = {}
    start = perf_counter()
    data = _load_tasks(task_list, senteval_dir, mode)
    from simcse.baselines.encoder import is_baseline, load_baseline

    if is_baseline(model):  # a training-free encoder from the related work (baseline:NAME[:SOURCE])
        encoder = load_baseline(model)
    else:
        from simcse.backends import load_encoder

        prompt = {"prompt_template": prompt_template, "prompt_denoise": prompt_denoise}
        if isinstance(model, Encoder) or _is_encoder_object(model):
            encoder = model
        elif backend != "torch":
            if prompt_template or prompt_denoise:
                raise ConfigError(
                    f"--prompt-template / --prompt-denoise cannot change an exported {backend} model"
                )
            encoder = load_encoder(model, pooler, backend, precision)
        else:
            encoder = Encoder.load(model, pooler, **prompt)
    timings["load"] = perf_counter() - start
    precision_line = None
    graph_line = encoder.line if getattr(encoder, "runner", None) is not None else None
    if graph_line is not None or isinstance(encoder, Encoder):
        from simcse.runtime import encoding_precision

        device = None if graph_line is not None else encoder.device
        dtype, precision_line = encoding_precision(precision, device, dtype, graph_line)

    pair_similarity = getattr(encoder, "pair_similarity", None)
    if pair_similarity is not None:  # WMD / WRD: pairs of word-vector sets, no sentence vectors
        other = [t for t in task_list if t not in sts.STS_TASKS]
        if other or whiten is not None:
            raise ConfigError(f"{encoder.source} scores sentence pairs and has no sentence vector: evaluate it on "
                              f"STS tasks only (not {', '.join(other) or '--whiten'})")  # fmt: skip
        return _evaluate_pairs(encoder, data, mode, aggregate, timings)
    sentences = [s for d in data.values() for s in _sentences_of(d)]
    corpus = read_corpus(whiten) if whiten not in (None, "self") else []
    per_task = getattr(encoder, "fit_postprocess", None)  # SIF / uSIF: components fitted per task
    table = EmbeddingTable(_Raw(encoder) if per_task else encoder, sentences + corpus, batch_size, dtype, cache_dir,
                           show_progress)  # fmt: skip
    timings["encode"] = table.encode_seconds
    embed = table
    whitening = None
    if whiten is not None:
        fit_on = table(corpus) if corpus else table.matrix
        whitening = Whitening.fit(fit_on, whiten_dim)

        def embed(s: Sequence[str]) -> np.ndarray:
            return whitening(table(s))

    start = perf_counter()
    results: dict[str, dict] = {}
    for task, task_data in data.items():
        if per_task is not None:
            embed = _fitted(
                per_task, table, _sentences_of(task_data), whitening if whiten is not None else None
            )
        if task in sts.STS_TASKS:
            results[task] = sts.score_sts(task_data, embed, aggregate)
        elif task == "geometry":
            results[task] = score_geometry(task_data, embed)
        elif clustering.is_clustering(task):
            results[task] = clustering.score_clustering(task_data, embed)
        else:
            from simcse.evaluation import transfer

            results[task] = transfer.evaluate_transfer_task(task_data, embed, mode=mode, seed=seed,
                                                            classifier=classifier)  # fmt: skip
    timings["score"] = perf_counter() - start

    averages = _sts_averages(results, mode)
    transfer_done = [t for t in TRANSFER_TASKS if t in results]
    if transfer_done and set(transfer_done) == set(TRANSFER_TASKS):
        key = "devacc" if mode == "dev" else "acc"
        averages["transfer"] = float(np.mean([results[t][key] for t in transfer_done]))
    if all(t in results for t in clustering.builtin_tasks()):
        averages["clustering"] = float(np.mean([results[t]["acc"] for t in clustering.builtin_tasks()]))
    return {
        "model": encoder.source,
        "pooler": encoder.pooler,
        **(encoder.prompt.describe() if getattr(encoder, "prompt", None) is not None else {}),
        "mode": mode,
        "aggregate": aggregate,
        "whiten": whiten,
        "whiten_dim": whiten_dim,
        "tasks": results,
        "avg": averages,
        "n_sentences": len(table.sentences),
        "seconds": timings,
        **({"precision": precision_line} if precision_line else {}),
    }


def _evaluate_pairs(encoder, data: dict, mode: str, aggregate: str, timings: dict) -> dict:
    """STS scored by a pair-similarity baseline (no embeddings): the same result layout as :func:`evaluate`."""
    start = perf_counter()
    results = {
        task: sts.score_sts(d, None, aggregate, similarity=encoder.pair_similarity)
        for task, d in data.items()
    }
    timings["score"] = perf_counter() - start
    averages = _sts_averages(results, mode)
    return {"model": encoder.source, "pooler": encoder.pooler, "mode": mode, "aggregate": aggregate, "whiten": None,
            "whiten_dim": None, "tasks": results, "avg": averages, "n_sentences": 0, "seconds": timings}  # fmt: skip


def _is_encoder_object(model: object) -> bool:
    """An object with the evaluator's encoder interface (e.g. a view of the baseline table's shared pass)."""
    return not isinstance(model, (str, PathLike)) and all(
        hasattr(model, name) for name in ("encode", "fingerprint", "source", "pooler")
    )


class _Raw:
    """An encoder whose ``encode`` is its raw vectors (the table of a per-task post-processed baseline)."""

    def __init__(self, encoder):
        self.encoder = encoder

    def encode(self, sentences, **kwargs):
        return self.encoder.raw(sentences, **kwargs)

    def fingerprint(self) -> str:
        return self.encoder.fingerprint() + "-raw"


def _fitted(fit, table: EmbeddingTable, task_sentences: list[str], whitening):
    """A task's embed function: the post-processing fitted on that task's distinct sentences."""
    post = fit(table(list(dict.fromkeys(task_sentences))))

    def embed(sentences):
        x = post(table(sentences))
        return whitening(x) if whitening is not None else x

    return embed


def _sts_averages(results: dict, mode: str) -> dict[str, float]:
    """The STS average (Spearman and Pearson) when all seven tasks were scored (in dev mode: those there)."""
    done = [t for t in sts.STS_TASKS if t in results]
    if not done or not (set(done) == set(TASK_GROUPS["sts"]) or mode == "dev"):
        return {}
    return {"sts": float(np.mean([results[t]["spearman"] for t in done])),
            "sts_pearson": float(np.mean([results[t]["pearson"] for t in done]))}  # fmt: skip
