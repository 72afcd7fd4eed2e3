"""The SimCSE API's index: build one from sentences or a file, add to it, search it, save and load it; a
mixin of :class:`~simcse.use.api.SimCSE`, which provides ``encode``, ``dim``, ``fingerprint`` and the
encoder."""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simcse.core.errors import IndexModelError, SimCSEError
from simcse.data.sentence_files import read_sentences
from simcse.modeling.sentence_encoder import require_fixed_vectors
from simcse.use.call_checks import check_device, count, not_a_device
from simcse.use.index import NumpyExact, VectorIndex, faiss_available
from simcse.use.index_dir import load_index_dir, read_index_model, save_index_dir

logger = logging.getLogger("simcse.use.api")


class IndexMethods:
    """``build_index``, ``add_to_index``, ``search``, ``save_index``, ``load_index`` and the original tool's
    ``index`` / ``is_faiss_index``. Set by ``__init__`` of the class it is mixed into: ``vector_index`` (a
    :class:`~simcse.use.index.VectorIndex` or None), ``sentences``, ``device``, ``num_cells``,
    ``num_cells_in_search``."""

    vector_index: VectorIndex | None
    sentences: list[str]

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
    ) -> Any:
        """Encode a collection into a new index of unit vectors (inner product = cosine), replacing the
        current one only once the new one is complete.

        Args:
            sentences_or_file_path: a list of sentences, or a text file with one sentence per line (blank
                lines skipped); a string that is not an existing file is an error, not a sentence.
            use_faiss: faiss or exact NumPy search; None: faiss when installed (True without faiss warns and
                uses NumPy).
            faiss_fast: the original's IVF index: ``index="ivf"`` with ``num_cells`` lists and
                ``num_cells_in_search`` probes, capped at the collection's size.
            device: where to encode (see :meth:`encode`); a GPU device also puts a faiss index (not HNSW) on
                the GPU when the faiss build has it.
            batch_size: sentences per batch (None: the constructor's).
            index: ``auto`` (exact, IVF past 100,000 vectors with faiss), ``flat``, ``ivf`` or ``hnsw``.
            show_progress: a tqdm bar over the encoding.
            **index_options: options of :class:`~simcse.use.index.VectorIndex` (``nlist``, ``nprobe``,
                ``hnsw_m``, ``ef_search``...).

        Returns:
            The model itself."""
        if use_faiss and not faiss_available():
            logger.warning("faiss is not installed (pip install faiss-cpu): using exact NumPy search")
            use_faiss = False
        if faiss_fast:
            if index not in ("auto", "ivf"):
                raise SimCSEError(f"faiss_fast=True means index='ivf', not {index!r}")
            index = "ivf"
        require_fixed_vectors(self.encoder, "build_index()")
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
    ) -> Any:
        """Encode more sentences into the current index (built or loaded before).

        Args:
            sentences_or_file_path: a list of sentences or a text file, as :meth:`build_index` takes them.
            device: where to encode (see :meth:`encode`).
            batch_size: sentences per batch (None: the constructor's).

        Returns:
            The model itself."""
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
        """The ``top_k`` most similar indexed sentences, best first, as (sentence, cosine).

        Args:
            queries: a sentence, or a list of them.
            device: where to encode the queries (see :meth:`encode`).
            threshold: keep the hits scoring at least this (0.6, as the original); None keeps all.
            top_k: hits per query, at most (an approximate index may find fewer).

        Returns:
            For one string a list of (sentence, score); for a list one such list per query (``[]`` for no
                query).

        Raises:
            SimCSEError: no index yet, or a bad ``top_k`` / ``threshold``."""
        if device is not None:
            check_device("search", device)
        if self.vector_index is None or len(self.vector_index) == 0:
            raise SimCSEError("no index: call build_index() or load_index() first")
        top_k = count("top_k", top_k, "search")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)):
            not_a_device("threshold", threshold, "search")
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
        (:func:`simcse.use.index_dir.save_index_dir`: a failure midway leaves a previous index intact).

        Args:
            directory: the index directory (created if missing).

        Returns:
            The directory."""
        if self.vector_index is None:
            raise SimCSEError("no index to save: call build_index() first")
        model = {"source": self.encoder.source, "fingerprint": self.fingerprint(), **self.encoder.describe()}
        return save_index_dir(Path(directory), self.vector_index, self.sentences, model)

    def load_index(self, directory: str | os.PathLike, check_model: bool = True) -> Any:
        """Load an index saved by :meth:`save_index`, replacing the current one.

        Args:
            directory: the index directory.
            check_model: refuse an index built by another model (its weights' fingerprint or dimension
                differs): its vectors would not match this model's queries. False loads any index of this
                dimension.

        Returns:
            The model itself.

        Raises:
            IndexModelError: the index was built by another model (or does not record which).
            SimCSEError: no such directory, or a different dimension."""
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
            return read_sentences(path, "input file")
        sentences = list(sentences_or_file_path)
        if not sentences:
            raise SimCSEError("nothing to index: the list of sentences is empty")
        if any(not isinstance(s, str) for s in sentences):
            raise SimCSEError("build_index() takes a list of strings or a text file")
        return sentences
