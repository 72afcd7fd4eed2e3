"""``SimCSE``: encode, compare and search sentences with a trained encoder.

    model = SimCSE()                                  # the embedded all-MiniLM-L6-v2
    model = SimCSE("runs/quickstart")                 # a saved simcse model, ST directory or HF model
    model.similarity("A man plays.", "Someone plays.")        # float
    model.build_index(["...", "..."]); model.search("query")  # [(sentence, score), ...]
    model.save_index("idx/"); SimCSE("runs/quickstart").load_index("idx/")

A drop-in for the original princeton-nlp tool (``simcse/tool.py``): the same signatures, positional
order, defaults and return types, tested against its source. ``SimCSE(model, device, num_cells=100,
num_cells_in_search=10, pooler)``, with the original's pooler rule (a plain Hugging Face model whose name
contains ``unsup`` is encoded with ``cls_before_pooler``, any other with ``cls``; a model that names its
pooler, as a simcse or sentence-transformers directory does, keeps it); ``encode(sentence, device,
return_numpy=False, normalize_to_unit=True, keepdim=False, batch_size=64, max_length=128)`` returning a
torch tensor on the CPU; ``similarity(queries, keys, device)``; ``build_index(sentences_or_file_path,
use_faiss=None, faiss_fast=False, device, batch_size=64)`` using faiss when installed (on the GPU when the
faiss build has it); ``add_to_index``; ``search(queries, device, threshold=0.6, top_k=5)``; ``.index`` a
dict ``{"sentences": [...], "index": faiss index or embedding matrix}``; ``is_faiss_index``.

Beyond the original, as keywords: ``encode(..., output="numpy", show_progress=..., dtype=torch.bfloat16 /
bf16=True)`` and sentence-transformers' ``convert_to_numpy``/``normalize_embeddings``; ``max_length=None``
for the model's own limit (128 is capped at a model's position limit); ``build_index(..., index="auto" |
"flat" | "ivf" | "hnsw", show_progress=...)``; ``save_index``/``load_index`` (refusing an index built by
another model); ``search(..., threshold=None)`` for no threshold; MTEB compatibility:
``mteb.evaluate(SimCSE(...), tasks)`` works (``encode`` takes MTEB's DataLoader, ``similarity`` and
``similarity_pairwise`` take embeddings, ``mteb_model_meta`` describes the model). A file given to
``build_index`` must exist (a string that is not a file is an error, not a sentence); blank lines are
skipped. Batches are length-sorted inside (less padding); outputs keep input order.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simcse.core.errors import SimCSEError
from simcse.modeling.names import EMBEDDED_HUB_ID
from simcse.modeling.sentence_encoder import (
    SentenceEncoder,
    require_fixed_vectors,
    require_sentence_vectors,
)
from simcse.use.api_index import IndexMethods
from simcse.use.call_checks import (
    MTEB_KWARGS,
    ORIGINAL_MAX_LENGTH,
    check_device,
    count,
    looks_like_mteb_loader,
    texts_from_mteb_loader,
)
from simcse.use.index import VectorIndex

logger = logging.getLogger(__name__)


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, torch.Tensor))


def _as_texts(sentences: Any) -> tuple[list[str], bool]:
    """encode()'s input as a list of strings, and whether it was one string."""
    single = isinstance(sentences, str)
    if not single and not isinstance(sentences, Iterable):
        raise SimCSEError(f"encode() takes a string or a list of strings, got {type(sentences).__name__}")
    texts = [sentences] if single else list(sentences)
    if any(not isinstance(t, str) for t in texts):
        raise SimCSEError("encode() takes a string or a list of strings")
    return texts, single


def _unit_rows(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x).float()
    if t.ndim == 1:
        t = t[None, :]
    return torch.nn.functional.normalize(t, dim=-1)


class SimCSE(IndexMethods):
    """Sentence embeddings, similarity and semantic search with one encoder.

    Outputs are float32 whatever the precision the model runs in. The first five arguments keep the original
    tool's positions.

    Args:
        model_name_or_path: a saved simcse model directory, a sentence-transformers directory, any Hugging
            Face model (id or directory), an :class:`~simcse.modeling.encoder.Encoder` (used as it is), or
            None for the embedded all-MiniLM-L6-v2; with ``backend`` onnx / openvino, a directory written by
            ``simcse export --to onnx|openvino``.
        device: where to encode (None: ``cuda`` when available with backend torch, else ``cpu``).
        num_cells: the original's IVF list count, used by ``build_index(faiss_fast=True)`` (capped at the
            collection's size).
        num_cells_in_search: the lists an IVF search visits with ``faiss_fast`` (capped likewise).
        pooler: overrides the model's pooler. A plain Hugging Face model names none: the original's rule gives
            it ``cls_before_pooler`` when the name contains ``unsup``, else ``cls``; a simcse or
            sentence-transformers directory keeps its own; an exported graph's is fixed.
        batch_size: :meth:`encode`'s default sentences per batch (64, as the original).
        max_length: truncation in tokens: the loaded model's limit and :meth:`encode`'s default (None: 128 as
            the original, capped at the model's limit).
        dtype: a torch dtype to encode in; overrides ``precision``.
        precision: ``auto`` (default): on a CPU, bf16 weights when it has bf16 units (AMX, AVX512-BF16),
            else fp32; on a GPU, bf16 where supported, else fp16. Or ``fp32`` / ``bf16`` / ``fp16``.
            :attr:`precision_line` says which and why.
        backend: ``torch``, or ``onnx`` / ``openvino`` for an exported graph (CPU; the graph's precision),
            or ``auto``: the fastest of those the model has on this CPU
            (:func:`~simcse.modeling.graph_encoder.choose_backend`; :attr:`precision_line` says which).

    Raises:
        SimCSEError: an unknown backend or pooler, a model that cannot be loaded, ``batch_size`` < 1."""

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | SentenceEncoder | None = None,
        device: str | torch.device | None = None,
        num_cells: int = 100,
        num_cells_in_search: int = 10,
        pooler: str | None = None,
        *,
        batch_size: int = 64,
        max_length: int | None = None,
        dtype: torch.dtype | None = None,
        precision: str = "auto",
        backend: str = "torch",
    ):
        from simcse.baselines.encoder import load_model_or_baseline
        from simcse.modeling.loading import check_backend

        backend, chosen = check_backend(backend), None
        if backend == "auto":
            from simcse.modeling.graph_encoder import choose_backend

            backend, chosen = choose_backend(model_name_or_path)
        # the original's rule for a model that does not name its pooler
        unsup = isinstance(model_name_or_path, (str, os.PathLike)) and "unsup" in str(model_name_or_path)
        options = {"plain_pooler": "cls_before_pooler" if unsup else "cls"} if backend == "torch" else {}
        self.encoder = load_model_or_baseline(
            model_name_or_path, pooler, backend, precision, max_length=max_length, **options
        )
        require_sentence_vectors(self.encoder, "SimCSE()")
        if unsup and pooler is None and self.encoder.pooler == "cls_before_pooler":
            logger.info(
                "Use `cls_before_pooler` for unsupervised models. To use another pooler, pass pooler="
            )
        if device is None:
            device = "cuda" if torch.cuda.is_available() and backend == "torch" else "cpu"
        self.device = str(device)
        self.encoder.to(device)
        self.encoder.eval()
        self.backend = backend
        dtype, line = self.encoder.encoding_precision(precision, dtype)
        self.precision_line = line or "precision of the encoder"
        if chosen is not None:
            self.precision_line = f"{chosen}: {self.precision_line}"
        logger.info("SimCSE: %s", self.precision_line)
        if batch_size < 1:
            raise SimCSEError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        # encode's default truncation (capped at the model's limit by max_length): the original's 128, or the
        # max_length given here
        self.default_max_length = ORIGINAL_MAX_LENGTH if max_length is None else max_length
        self.dtype = dtype
        self.num_cells = num_cells
        self.num_cells_in_search = num_cells_in_search
        self.vector_index: VectorIndex | None = None
        self.sentences: list[str] = []
        self._fingerprint: tuple[tuple, str] | None = None

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return self.encoder.dim

    @property
    def max_length(self) -> int:
        """Tokens per sentence that :meth:`encode`, the index methods and a server of this model truncate at
        by default: 128 as the original tool (capped at the model's limit), or ``SimCSE(max_length=...)``."""
        return min(self.default_max_length, self.encoder.max_length or self.default_max_length)

    def at_model_limit(self) -> SimCSE:
        """Truncate at the model's own limit from now on (what the CLI commands and ``simcse serve`` do), not
        at the original Python tool's 128 tokens; returns the model."""
        self.default_max_length = self.encoder.max_length or self.default_max_length  # None: no tokens
        return self

    def fingerprint(self) -> str:
        """The encoder's weights fingerprint, cached until a weight tensor is replaced or modified in place
        (hashing a large model takes seconds, and MTEB reads ``mteb_model_meta`` several times per task)."""
        enc = self.encoder
        key = (enc.inference_pooler, enc.max_length, *enc.weights_key())
        if self._fingerprint is None or self._fingerprint[0] != key:
            self._fingerprint = (key, enc.fingerprint())
        return self._fingerprint[1]

    # ------------------------------------------------------------------ encode / similarity
    def encode(
        self,
        sentence: str | Sequence[str],
        device: str | torch.device | None = None,
        return_numpy: bool = False,
        normalize_to_unit: bool = True,
        keepdim: bool = False,
        batch_size: int | None = None,
        max_length: int | None = ORIGINAL_MAX_LENGTH,
        *,
        output: str | None = None,
        show_progress: bool = False,
        dtype: torch.dtype | None = None,
        bf16: bool = False,
        **kwargs: Any,
    ) -> np.ndarray | torch.Tensor:
        """Embeddings in input order: one string gives a vector ``(dim,)`` (``(1, dim)`` with ``keepdim``), a
        list gives ``(n, dim)``; a float32 torch tensor on the CPU, or NumPy with ``return_numpy=True`` or
        ``output="numpy"``.

        Unit vectors by default (``normalize_to_unit=True``, as the original tool): each row divided by its L2
        norm. :meth:`simcse.modeling.encoder.Encoder.encode`, which this calls, does that only when asked (its
        ``normalize`` defaults to False): ``model.encode(xs)`` is ``model.encoder.encode(xs, normalize=True)``
        at this method's truncation and precision. ``normalize`` and ``normalize_embeddings``
        (sentence-transformers' name; its False default does not apply here) set the same switch and win over
        ``normalize_to_unit``.

        Also accepted in ``kwargs``: ``convert_to_numpy`` / ``convert_to_tensor`` / ``show_progress_bar``,
        ``**{"return": "numpy"}``, and MTEB's call ``encode(DataLoader, task_metadata=..., ...)`` (NumPy out;
        MTEB's other keywords ignored, a ``precision`` other than float32 refused). Otherwise an unknown
        keyword is a TypeError.

        Args:
            sentence: a string or a list of strings (or MTEB's DataLoader).
            device: where to encode; the model moves there and stays (as in the original tool).
            return_numpy: return a NumPy array instead of a torch tensor.
            normalize_to_unit: unit-normalise each embedding (default True).
            keepdim: keep the batch dimension for a single string.
            batch_size: sentences per batch (None: the constructor's, 64 by default).
            max_length: tokens per sentence: by default 128 as the original (or ``SimCSE(max_length=...)``),
                capped at the model's limit; an explicit value beyond it is refused; None: the model's own
                limit.
            output: ``"numpy"`` or ``"torch"`` (None: from ``return_numpy``).
            show_progress: a tqdm bar over the batches.
            dtype: a torch dtype to encode in (None: the constructor's precision).
            bf16: shorthand for ``dtype=torch.bfloat16``.
            **kwargs: the compatibility keywords above."""
        sentences = sentence
        output = output or ("numpy" if return_numpy else "torch")
        normalize = normalize_to_unit
        from_mteb = not isinstance(sentences, (str, list, tuple)) and looks_like_mteb_loader(sentences)
        if from_mteb:
            sentences = texts_from_mteb_loader(sentences)
            for key in MTEB_KWARGS:
                kwargs.pop(key, None)
            precision = kwargs.pop("precision", None)
            if precision not in (None, "float32", "float"):
                raise SimCSEError(f"MTEB precision {precision!r} is not supported; SimCSE gives float32")
            output = "numpy"
        if "return" in kwargs:
            output = kwargs.pop("return")
        if "convert_to_tensor" in kwargs:  # sentence-transformers' flags
            output = "torch" if kwargs.pop("convert_to_tensor") else output
        if "convert_to_numpy" in kwargs:
            output = "numpy" if kwargs.pop("convert_to_numpy") else "torch"
        if "normalize" in kwargs:
            normalize = bool(kwargs.pop("normalize"))
        if "normalize_embeddings" in kwargs:
            normalize = bool(kwargs.pop("normalize_embeddings"))
        if "show_progress_bar" in kwargs:
            show_progress = bool(kwargs.pop("show_progress_bar"))
        keepdim = bool(keepdim)
        if kwargs:
            if not from_mteb:
                raise TypeError(f"encode() got unexpected keyword arguments: {', '.join(sorted(kwargs))}")
            logger.debug("encode: ignoring MTEB arguments %s", sorted(kwargs))
        if output not in ("numpy", "torch"):
            raise SimCSEError(f"output must be 'numpy' or 'torch', got {output!r}")
        texts, single = _as_texts(sentences)
        batch_size = self.batch_size if batch_size is None else count("batch_size", batch_size, "encode")
        dtype = torch.bfloat16 if bf16 else dtype or self.dtype
        if device is not None:
            check_device("encode", device)
            self.encoder.to(device)
        if max_length is ORIGINAL_MAX_LENGTH:
            max_length = self.max_length
        elif max_length is not None:
            max_length = count("max_length", max_length, "encode")
        how = {
            "normalize": normalize,
            "max_length": max_length,
            "dtype": dtype,
            "show_progress": show_progress,
        }
        matrix = self.encoder.encode(texts, batch_size=batch_size, **how)
        result = matrix[0] if single and not keepdim else matrix
        return torch.from_numpy(result) if output == "torch" else result

    def similarity(
        self,
        queries: str | Sequence[str] | np.ndarray | torch.Tensor,
        keys: str | Sequence[str] | np.ndarray | torch.Tensor,
        device: str | torch.device | None = None,
    ) -> float | np.ndarray | torch.Tensor:
        """Cosine similarity.

        With sentences (as the original tool): a float for two strings, a vector ``(M,)`` for one query and M
        keys, else an ``(N, M)`` NumPy matrix (``(N, 1)`` for one key); ``keys`` may also be an array of
        embeddings. With two arrays of embeddings (sentence-transformers' and MTEB's ``similarity``): an ``(N,
        M)`` torch tensor. Embeddings given are normalised here, so raw vectors work too.

        Args:
            queries: a sentence, sentences, or embeddings ``(dim,)`` / ``(N, dim)``.
            keys: likewise.
            device: where to encode the sentences (see :meth:`encode`).

        Raises:
            SimCSEError: embeddings of different dimensions."""
        if _is_array(queries) and _is_array(keys):
            return _unit_rows(queries) @ _unit_rows(keys).T
        single_query = isinstance(queries, str) or (_is_array(queries) and queries.ndim == 1)
        single_key = isinstance(keys, str) or (_is_array(keys) and keys.ndim == 1)
        q = _unit_rows(queries) if _is_array(queries) else self._embed_all(queries, device)
        k = _unit_rows(keys) if _is_array(keys) else self._embed_all(keys, device)
        if q.shape[1] != k.shape[1]:
            raise SimCSEError(f"embeddings of dimension {q.shape[1]} and {k.shape[1]} cannot be compared")
        scores = (q @ k.T).numpy()
        if single_query:
            return float(scores[0, 0]) if single_key else scores[0]
        return scores

    def similarity_pairwise(
        self, embeddings1: np.ndarray | torch.Tensor, embeddings2: np.ndarray | torch.Tensor
    ) -> torch.Tensor:
        """Cosine of each pair of rows (sentence-transformers' and MTEB's ``similarity_pairwise``), as a torch
        tensor ``(N,)``.

        Args:
            embeddings1: embeddings ``(N, dim)`` (normalised here).
            embeddings2: embeddings of the same shape."""
        a, b = _unit_rows(embeddings1), _unit_rows(embeddings2)
        if a.shape != b.shape:
            raise SimCSEError(
                f"pairwise similarity needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        return (a * b).sum(dim=-1)

    def _embed_all(self, texts: str | Sequence[str], device: str | torch.device | None) -> torch.Tensor:
        require_fixed_vectors(self.encoder, "similarity() of sentences")
        return self.encode(texts, device=device, output="torch", keepdim=True)

    # ------------------------------------------------------------------ MTEB
    @property
    def mteb_model_meta(self) -> Any:
        """``mteb.models.ModelMeta`` for ``mteb.evaluate``; the revision is the weights' fingerprint, so
        MTEB's result cache never mixes two different models of the same name."""
        from mteb.models import ModelMeta

        source = str(self.encoder.source or "model")
        if _is_embedded(source):
            name = EMBEDDED_HUB_ID
        elif re.fullmatch(r"[\w.-]+/[\w.-]+", source) and not Path(source).exists():
            name = source  # a hub id
        else:
            name = "simcse-local/" + (re.sub(r"[^\w.-]+", "-", Path(source).name).strip("-") or "model")
        return ModelMeta.create_empty(
            overwrites={
                "name": name,
                "revision": self.fingerprint(),
                "embed_dim": self.dim,
                "max_tokens": self.encoder.max_length,
                "n_parameters": sum(p.numel() for p in self.encoder.parameters())
                if isinstance(self.encoder, torch.nn.Module)
                else 0,
                "similarity_fn_name": "cosine",
                "framework": ["PyTorch"],
                "open_weights": True,
            }
        )


def _is_embedded(source: str) -> bool:
    from simcse.modeling.model_dir import embedded_model_path
    from simcse.modeling.names import EMBEDDED_MODEL

    if source == EMBEDDED_MODEL:
        return True
    try:
        return Path(source).resolve() == embedded_model_path().resolve()
    except (SimCSEError, OSError):
        return False
