"""Vector index over unit-normalised embeddings: inner product = cosine similarity.

Backends:
- ``flat``: exact search (faiss ``IndexFlatIP`` when faiss is installed, else NumPy);
- ``ivf``: faiss inverted lists (``IndexIVFFlat``), trained on the first vectors added;
- ``hnsw``: faiss HNSW graph (``IndexHNSWFlat``, inner product);
- ``auto``: ``flat`` below ``AUTO_EXACT_LIMIT`` vectors, ``hnsw`` above (when faiss is installed).

The NumPy backend keeps the vectors in the chunks they were added in (no concatenated copy) and searches
chunk by chunk, so 1M x 384 floats use ~1.5 GB, the raw size. It returns the same top-k as faiss' exact index
(on exact ties it keeps the lowest ids, in id order; faiss orders ties its own way).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from simcse.errors import SimCSEError

KINDS = ("auto", "flat", "ivf", "hnsw")
AUTO_EXACT_LIMIT = 100_000
INDEX_FILE = "index.faiss"
VECTORS_FILE = "vectors.npy"
META_FILE = "index.json"


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _as_matrix(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise SimCSEError(f"expected vectors of shape (n, {dim}), got {tuple(np.shape(vectors))}")
    return x


class NumpyExact:
    """Exact inner-product search in NumPy, over the chunks as added."""

    def __init__(self, dim: int):
        self.dim = dim
        self.chunks: list[np.ndarray] = []

    @property
    def ntotal(self) -> int:
        return sum(len(c) for c in self.chunks)

    def add(self, x: np.ndarray) -> None:
        self.chunks.append(x)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(queries)
        best_scores = np.full((n, k), -np.inf, dtype=np.float32)
        best_ids = np.full((n, k), -1, dtype=np.int64)
        offset = 0
        for chunk in self.chunks:
            for start in range(0, len(chunk), 65536):
                block = chunk[start : start + 65536]
                scores = queries @ block.T
                kk = min(k, block.shape[0])
                top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
                # argpartition keeps arbitrary members of a tie at the k-th score: redo such rows with a
                # stable sort so ties keep the lowest ids, whatever the chunking
                kth = np.take_along_axis(scores, top, axis=1).min(axis=1, keepdims=True)
                for row in np.flatnonzero((scores >= kth).sum(axis=1) > kk):
                    top[row] = np.argsort(-scores[row], kind="stable")[:kk]
                cand_scores = np.take_along_axis(scores, top, axis=1)
                merged_scores = np.concatenate([best_scores, cand_scores], axis=1)
                merged_ids = np.concatenate([best_ids, top + offset + start], axis=1)
                # higher score first, then lower id (faiss orders exact ties its own way)
                order = np.lexsort((merged_ids, -merged_scores), axis=1)[:, :k]
                best_scores = np.take_along_axis(merged_scores, order, axis=1)
                best_ids = np.take_along_axis(merged_ids, order, axis=1)
            offset += len(chunk)
        return best_scores, best_ids

    def vectors(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros((0, self.dim), np.float32)


class VectorIndex:
    """``add`` vectors, ``search`` top-k by inner product, ``save``/``load`` a directory."""

    def __init__(
        self,
        dim: int,
        kind: str = "auto",
        use_faiss: bool | None = None,
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
    ):
        if kind not in KINDS:
            raise SimCSEError(f"index kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.use_faiss = faiss_available() if use_faiss is None else use_faiss
        if self.use_faiss and not faiss_available():
            raise SimCSEError("faiss is not installed: pip install faiss-cpu (or use the NumPy index)")
        if kind in ("ivf", "hnsw") and not self.use_faiss:
            raise SimCSEError(f"index kind {kind!r} needs faiss: pip install faiss-cpu")
        self.dim, self.kind = dim, kind
        self.nlist, self.nprobe, self.hnsw_m, self.ef_search = nlist, nprobe, hnsw_m, ef_search
        self.backend = None  # created on the first add, when the size is known

    def __len__(self) -> int:
        return 0 if self.backend is None else int(self.backend.ntotal)

    @property
    def resolved_kind(self) -> str:
        return self._resolved if self.backend is not None else self.kind

    def _create(self, first: np.ndarray):
        kind = self.kind
        if kind == "auto":
            kind = "hnsw" if self.use_faiss and len(first) >= AUTO_EXACT_LIMIT else "flat"
        self._resolved = kind
        if not self.use_faiss:
            return NumpyExact(self.dim)
        import faiss

        if kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = self.ef_search
            return index
        nlist = self.nlist or max(1, min(int(4 * np.sqrt(len(first))), len(first) // 39))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(first)
        index.nprobe = min(self.nprobe, nlist)
        self._quantizer = quantizer  # faiss does not own it from Python
        return index

    def add(self, vectors: np.ndarray) -> None:
        x = _as_matrix(vectors, self.dim)
        if len(x) == 0:
            return
        if self.backend is None:
            self.backend = self._create(x)
        self.backend.add(x)

    def search(self, queries: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, k'), k' = min(k, size); best first."""
        q = _as_matrix(queries, self.dim)
        if len(self) == 0:
            raise SimCSEError("the index is empty; build it first")
        k = max(1, min(int(k), len(self)))
        scores, ids = self.backend.search(q, k)
        return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"dim": self.dim, "kind": self.resolved_kind, "faiss": self.use_faiss, "size": len(self),
                "nprobe": self.nprobe, "ef_search": self.ef_search}  # fmt: skip
        if self.backend is not None and self.use_faiss:
            import faiss

            tmp = directory / (INDEX_FILE + ".tmp")
            faiss.write_index(self.backend, str(tmp))
            os.replace(tmp, directory / INDEX_FILE)
        elif self.backend is not None:
            tmp = directory / "vectors.tmp.npy"
            with tmp.open("wb") as f:  # chunk by chunk: no concatenated copy of all the vectors
                header = {"descr": "<f4", "fortran_order": False, "shape": (len(self), self.dim)}
                np.lib.format.write_array_header_1_0(f, header)
                for chunk in self.backend.chunks:
                    np.ascontiguousarray(chunk, dtype="<f4").tofile(f)
            os.replace(tmp, directory / VECTORS_FILE)
        (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | os.PathLike, mmap: bool = True) -> VectorIndex:
        directory = Path(directory)
        meta_path = directory / META_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            dim, kind, with_faiss = int(meta["dim"]), str(meta["kind"]), bool(meta["faiss"])
            nprobe, ef_search = int(meta.get("nprobe", 16)), int(meta.get("ef_search", 128))
        except FileNotFoundError as e:
            raise SimCSEError(f"{meta_path}: not found; is {directory} an index directory?") from e
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SimCSEError(f"{meta_path}: cannot read the index description ({e})") from e
        index = cls(dim, kind if kind in KINDS else "flat", use_faiss=with_faiss, nprobe=nprobe,
                    ef_search=ef_search)  # fmt: skip
        index._resolved = kind
        if meta.get("size", 0) == 0:
            return index
        if with_faiss:
            import faiss

            try:
                index.backend = faiss.read_index(str(directory / INDEX_FILE))
            except RuntimeError as e:
                raise SimCSEError(f"{directory / INDEX_FILE}: cannot read the faiss index ({e})") from e
            if hasattr(index.backend, "nprobe"):
                index.backend.nprobe = index.nprobe
            if hasattr(index.backend, "hnsw"):
                index.backend.hnsw.efSearch = index.ef_search
        else:
            try:
                vectors = np.load(
                    directory / VECTORS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False
                )
            except (OSError, ValueError) as e:
                raise SimCSEError(f"{directory / VECTORS_FILE}: cannot read the vectors ({e})") from e
            if vectors.ndim != 2 or vectors.shape[1] != dim:
                raise SimCSEError(
                    f"{directory / VECTORS_FILE}: vectors of shape {vectors.shape}, expected (n, {dim})"
                )
            backend = NumpyExact(dim)
            backend.add(_as_matrix(vectors, dim))  # no copy: a memory map stays one
            index.backend = backend
        if len(index) != meta.get("size", len(index)):
            raise SimCSEError(
                f"{directory}: the index holds {len(index)} vectors, its description says {meta['size']}"
            )
        return index
