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
import numbers
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simcse.errors import IndexModelError, SimCSEError
from simcse.index import NumpyExact, VectorIndex, faiss_available
from simcse.index_dir import load_index_dir, read_index_model, save_index_dir
from simcse.modeling.encoder import Encoder

logger = logging.getLogger(__name__)

# Keyword arguments MTEB passes to ``encode`` along with its DataLoader; they do not change the embeddings.
_MTEB_KWARGS = ("task_metadata", "hf_split", "hf_subset", "prompt_type", "task_name", "request_qid")


def read_sentence_file(path: str | os.PathLike) -> list[str]:
    """One sentence per line (UTF-8); blank lines are skipped."""
    from simcse.sentence_files import read_txt

    return [row[0] for row in read_txt(Path(path), "input file").rows]


class _DefaultLength(int):
    """The original tool's ``max_length=128`` default, told apart from an explicit 128 (``is``): by default
    ``encode`` uses ``SimCSE(max_length=...)`` when given, else 128 capped at the model's limit."""


ORIGINAL_MAX_LENGTH = _DefaultLength(128)
DEVICE_NAMES = re.compile(r"^(cpu|cuda(:\d+)?|mps|xpu(:\d+)?)$")


def _not_a_device(name: str, value: Any, method: str) -> None:
    """A device name where ``name`` belongs (the original tool took ``device`` second) is an error that
    says so."""
    if isinstance(value, (str, torch.device)) and DEVICE_NAMES.match(str(value)):
        raise SimCSEError(
            f"{method}() got the device {str(value)!r} where it takes {name}; the original tool took device "
            f"second: pass device={str(value)!r} by keyword"
        )


def _device(method: str, value: Any) -> None:
    """``device`` is the second argument, as in the original tool; anything else there (say a ``top_k`` or
    ``batch_size`` passed by position) is an error that says so."""
    if isinstance(value, torch.device) or (isinstance(value, str) and DEVICE_NAMES.match(value)):
        return
    raise SimCSEError(
        f"{method}() takes the device second, as the original tool (cpu, cuda, cuda:N, mps), got {value!r}; "
        "pass other arguments by keyword"
    )


def _count(name: str, value: Any, method: str) -> int:
    """An integer argument >= 1."""
    _not_a_device(name, value, method)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SimCSEError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, torch.Tensor))


def _unit_rows(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x).float()
    if t.ndim == 1:
        t = t[None, :]
    return torch.nn.functional.normalize(t, dim=-1)


class SimCSE:
    """Sentence embeddings, similarity and semantic search with one encoder.

    ``model_name_or_path``: a saved simcse model directory, a sentence-transformers directory, any Hugging
    Face model (id or directory, with ``pooler``), an :class:`~simcse.modeling.encoder.Encoder`, or ``None`` for the
    embedded all-MiniLM-L6-v2.

    ``precision``: ``auto`` (default) encodes with bf16 weights on a CPU with bf16 units (AMX, AVX512-BF16)
    and on GPUs with bf16, else in fp32; ``fp32`` / ``bf16`` / ``fp16``; ``dtype`` (a torch dtype) overrides it.
    Outputs stay float32. ``backend``: ``torch``, or ``onnx`` / ``openvino`` for a directory written by
    ``simcse export --to onnx|openvino`` (CPU; the graph's precision, :attr:`precision_line` says which).
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | Encoder | None = None,
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
        from simcse.backends import check_backend, load_encoder
        from simcse.runtime import encoding_precision

        backend = check_backend(backend)
        if isinstance(model_name_or_path, Encoder):
            if pooler is not None or max_length is not None:
                raise SimCSEError("pooler and max_length apply when loading a model, not to an Encoder")
            if backend != "torch":
                raise SimCSEError(f"backend {backend} loads an export directory, not an Encoder")
            self.encoder = model_name_or_path
        elif backend != "torch":
            self.encoder = load_encoder(model_name_or_path, pooler, backend, precision, max_length=max_length)
        else:
            # the original's rule for a model that does not name its pooler
            unsup = isinstance(model_name_or_path, (str, os.PathLike)) and "unsup" in str(model_name_or_path)
            plain = "cls_before_pooler" if unsup else "cls"
            self.encoder = Encoder.load(model_name_or_path, pooler, max_length=max_length, plain_pooler=plain)
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
        graph_line = self.encoder.line if backend != "torch" else None
        dtype, self.precision_line = encoding_precision(precision, self.device, dtype, graph_line)
        logger.info("SimCSE: %s", self.precision_line)
        if batch_size < 1:
            raise SimCSEError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        # encode's default truncation: the original's 128 (capped at the model), or the max_length given here
        self.default_max_length = (max_length if max_length is not None
                                   else min(ORIGINAL_MAX_LENGTH, self.encoder.max_length))  # fmt: skip
        self.dtype = dtype
        self.num_cells = num_cells
        self.num_cells_in_search = num_cells_in_search
        self.vector_index: VectorIndex | None = None
        self.sentences: list[str] = []
        self._fingerprint: tuple[tuple, str] | None = None

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def fingerprint(self) -> str:
        """The encoder's weights fingerprint, cached until a weight tensor is replaced or modified in place
        (hashing a large model takes seconds, and MTEB reads ``mteb_model_meta`` several times per task)."""
        enc = self.encoder
        key = (enc.pooler, enc.mlp_at_inference, enc.max_length) + tuple(
            (name, t.data_ptr(), t._version) for name, t in enc.state_dict().items()
        )
        if self._fingerprint is None or self._fingerprint[0] != key:
            self._fingerprint = (key, enc.fingerprint())
        return self._fingerprint[1]

    @property
    def is_faiss_index(self) -> bool:
        """As the original tool: whether the current index uses faiss."""
        return self.vector_index is not None and self.vector_index.use_faiss

    @property
    def index(self) -> dict[str, Any] | None:
        """As the original tool: ``{"sentences": [...], "index": the faiss index, or the (n, dim) matrix of
        unit embeddings without faiss}``; None before an index is built or loaded. The sentences and the
        faiss index are the ones searched; the matrix is a copy."""
        if self.vector_index is None:
            return None
        backend = self.vector_index.backend
        if isinstance(backend, NumpyExact):
            raw = np.concatenate(backend.chunks) if backend.chunks else np.zeros((0, self.dim), np.float32)
        else:
            raw = backend
        return {"sentences": self.sentences, "index": raw}

    @index.setter
    def index(self, value: None) -> None:
        if value is not None:
            raise SimCSEError("set .index only to None (to drop it); build_index() or load_index() makes one")
        self.vector_index, self.sentences = None, []

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
        ``output="numpy"``. ``batch_size`` defaults to the constructor's (64). ``max_length`` (128, as the
        original; capped at a model with fewer positions) truncates; None uses the model's own limit.

        Also accepted: ``normalize`` / ``normalize_embeddings`` / ``convert_to_numpy`` /
        ``convert_to_tensor`` / ``show_progress_bar`` (sentence-transformers' names), ``**{"return":
        "numpy"}``, and MTEB's call ``encode(DataLoader, task_metadata=..., hf_split=..., ...)``.
        ``dtype``/``bf16`` encode in that precision (bf16 on a CPU: bf16 weights; else autocast).
        """
        sentences = sentence
        output = output or ("numpy" if return_numpy else "torch")
        normalize = normalize_to_unit
        from_mteb = not isinstance(sentences, (str, list, tuple)) and _looks_like_mteb_loader(sentences)
        if from_mteb:
            sentences = _texts_from_mteb_loader(sentences)
            for key in _MTEB_KWARGS:
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
        single = isinstance(sentences, str)
        if not single and not isinstance(sentences, Iterable):
            raise SimCSEError(f"encode() takes a string or a list of strings, got {type(sentences).__name__}")
        texts = [sentences] if single else list(sentences)
        if any(not isinstance(t, str) for t in texts):
            raise SimCSEError("encode() takes a string or a list of strings")
        batch_size = self.batch_size if batch_size is None else _count("batch_size", batch_size, "encode")
        if bf16:
            dtype = torch.bfloat16
        if device is not None:
            _device("encode", device)
            self.encoder.to(device)
        if max_length is ORIGINAL_MAX_LENGTH:
            max_length = min(self.default_max_length, self.encoder.max_length)
        elif max_length is not None:
            max_length = _count("max_length", max_length, "encode")
        matrix = self.encoder.encode(
            texts, batch_size, normalize, max_length, dtype or self.dtype, show_progress
        )
        result = matrix[0] if single and not keepdim else matrix
        return torch.from_numpy(result) if output == "torch" else result

    def similarity(
        self,
        queries: str | Sequence[str] | np.ndarray | torch.Tensor,
        keys: str | Sequence[str] | np.ndarray | torch.Tensor,
        device: str | torch.device | None = None,
    ) -> float | np.ndarray | torch.Tensor:
        """Cosine similarity.

        With sentences (as the original tool): a float for two strings, a vector ``(M,)`` for one query
        and M keys, else an ``(N, M)`` NumPy matrix (``(N, 1)`` for one key); ``keys`` may also be an array
        of embeddings. With two arrays of embeddings (sentence-transformers' and MTEB's ``similarity``):
        an ``(N, M)`` torch tensor.
        """
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
        """Cosine of each pair of rows (sentence-transformers' and MTEB's ``similarity_pairwise``)."""
        a, b = _unit_rows(embeddings1), _unit_rows(embeddings2)
        if a.shape != b.shape:
            raise SimCSEError(
                f"pairwise similarity needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        return (a * b).sum(dim=-1)

    def _embed_all(self, texts: str | Sequence[str], device: str | torch.device | None) -> torch.Tensor:
        return self.encode(texts, device=device, output="torch", keepdim=True)

    # ------------------------------------------------------------------ index
    def build_index(
        self,
        sentences_or_file_path: str | os.PathLike | Sequence[str],
        use_faiss: bool | None = None,
        faiss_fast: bool = False,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        *,
        index: str = "auto",
        show_progress: bool = False,
        **index_options: Any,
    ) -> SimCSE:
        """Encode a collection (a list, or a text file with one sentence per line) into a new index,
        replacing the current one only once the new one is complete.

        ``index``: ``auto``/``flat``/``ivf``/``hnsw``; ``index_options`` go to
        :class:`~simcse.index.VectorIndex` (``nlist``, ``nprobe``, ``hnsw_m``, ``ef_search``...).
        """
        if use_faiss and not faiss_available():
            logger.warning("faiss is not installed (pip install faiss-cpu): using exact NumPy search")
            use_faiss = False
        if faiss_fast:
            if index not in ("auto", "ivf"):
                raise SimCSEError(f"faiss_fast=True means index='ivf', not {index!r}")
            index = "ivf"
        sentences = self._collection(sentences_or_file_path)
        if faiss_fast:  # the original's IVF sizes; index="ivf" alone sizes the lists from the collection
            index_options.setdefault("nlist", min(self.num_cells, len(sentences)))
            index_options.setdefault("nprobe", min(self.num_cells_in_search, len(sentences)))
        index_options.setdefault("gpu", str(device or self.device).startswith("cuda"))
        new_index = VectorIndex(self.dim, index, use_faiss=use_faiss, **index_options)  # checks first
        vectors = self.encode(sentences, device, True, batch_size=batch_size, show_progress=show_progress)
        new_index.add(vectors)
        self.vector_index, self.sentences = new_index, sentences
        return self

    def add_to_index(
        self,
        sentences_or_file_path: str | os.PathLike | Sequence[str],
        device: str | torch.device | None = None,
        batch_size: int | None = None,
    ) -> SimCSE:
        """Encode more sentences into the current index (built or loaded before)."""
        if self.vector_index is None:
            raise SimCSEError("no index to add to: call build_index() or load_index() first")
        sentences = self._collection(sentences_or_file_path)
        self.vector_index.add(self.encode(sentences, device, True, batch_size=batch_size))
        self.sentences.extend(sentences)
        return self

    def search(
        self,
        queries: str | Sequence[str],
        device: str | torch.device | None = None,
        threshold: float | None = 0.6,
        top_k: int = 5,
    ) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
        """The ``top_k`` most similar indexed sentences, best first, as (sentence, cosine), keeping those
        scoring at least ``threshold`` (0.6, as the original; None keeps all); for a list of queries, one
        such list per query."""
        if device is not None:
            _device("search", device)
        if self.vector_index is None or len(self.vector_index) == 0:
            raise SimCSEError("no index: call build_index() or load_index() first")
        top_k = _count("top_k", top_k, "search")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)):
            _not_a_device("threshold", threshold, "search")
            raise SimCSEError(f"threshold must be a number, got {threshold!r}")
        single = isinstance(queries, str)
        texts = [queries] if single else list(queries)
        if not texts:
            return []
        queries_vectors = self.encode(texts, device, True)
        scores, ids = self.vector_index.search(queries_vectors, top_k)
        results = []
        for row_scores, row_ids in zip(scores, ids):
            hits = [(self.sentences[i], float(s)) for s, i in zip(row_scores, row_ids) if i >= 0]
            if threshold is not None:
                hits = [h for h in hits if h[1] >= threshold]
            results.append(hits)
        return results[0] if single else results

    # ------------------------------------------------------------------ persistence
    def save_index(self, directory: str | os.PathLike) -> Path:
        """Save the index, its sentences and which model built it into ``directory``
        (:func:`simcse.index_dir.save_index_dir`: a failure midway leaves a previous index intact)."""
        if self.vector_index is None:
            raise SimCSEError("no index to save: call build_index() first")
        model = {"source": self.encoder.source, "fingerprint": self.fingerprint(), **self.encoder.describe()}
        return save_index_dir(Path(directory), self.vector_index, self.sentences, model)

    def load_index(self, directory: str | os.PathLike, check_model: bool = True) -> SimCSE:
        """Load an index saved by :meth:`save_index`. With ``check_model`` an index built by another
        model (weights, pooler or dimension) is refused: its vectors would not match this model's queries."""
        directory = Path(directory)
        if not directory.is_dir():
            raise SimCSEError(f"{directory}: not found or not a directory")
        if check_model:
            saved = read_index_model(directory)
            if saved.get("dim") != self.dim:
                raise SimCSEError(
                    f"{directory}: built with a {saved.get('dim')}-dim model, this one has {self.dim} dims"
                )
            if saved.get("fingerprint") != self.fingerprint():
                raise IndexModelError(
                    f"{directory}: built with another model ({saved.get('source')})",
                    "load that model, or pass check_model=False",
                )
        self.vector_index, self.sentences = load_index_dir(directory, self.dim)
        return self

    def _collection(self, sentences_or_file_path: str | os.PathLike | Sequence[str]) -> list[str]:
        if isinstance(sentences_or_file_path, (str, os.PathLike)):
            path = Path(sentences_or_file_path)
            if not path.is_file():
                raise SimCSEError(f"{path}: file not found (pass a list to index sentences)")
            return read_sentence_file(path)
        sentences = list(sentences_or_file_path)
        if not sentences:
            raise SimCSEError("nothing to index: the list of sentences is empty")
        if any(not isinstance(s, str) for s in sentences):
            raise SimCSEError("build_index() takes a list of strings or a text file")
        return sentences

    # ------------------------------------------------------------------ MTEB
    @property
    def mteb_model_meta(self) -> Any:
        """``mteb.models.ModelMeta`` for ``mteb.evaluate``; the revision is the weights' fingerprint, so
        MTEB's result cache never mixes two different models of the same name."""
        from mteb.models import ModelMeta

        source = str(self.encoder.source or "model")
        if _is_embedded(source):
            name = "sentence-transformers/all-MiniLM-L6-v2"
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
                "n_parameters": sum(p.numel() for p in self.encoder.parameters()),
                "similarity_fn_name": "cosine",
                "framework": ["PyTorch"],
                "open_weights": True,
            }
        )


def _is_embedded(source: str) -> bool:
    from simcse.modeling.model_dir import EMBEDDED_MODEL, embedded_model_path

    if source == EMBEDDED_MODEL:
        return True
    try:
        return Path(source).resolve() == embedded_model_path().resolve()
    except (SimCSEError, OSError):
        return False


# ---------------------------------------------------------------------------------------------- MTEB
def _looks_like_mteb_loader(obj: Any) -> bool:
    return hasattr(obj, "dataset") and hasattr(obj, "__iter__")


def _texts_from_mteb_loader(loader: Iterable[dict]) -> list[str]:
    texts: list[str] = []
    for batch in loader:
        if not isinstance(batch, dict) or "text" not in batch:
            raise SimCSEError("SimCSE encodes text only; this MTEB task gives no 'text' field")
        texts.extend(batch["text"])
    return texts
