"""``SimCSE``: encode, compare and search sentences with a trained encoder.

Method names and meanings follow the original princeton-nlp ``simcse.SimCSE`` tool (``encode``,
``similarity``, ``build_index``, ``add_to_index``, ``search``) so its users can switch, with the
sentence-transformers conventions where they differ (``encode`` returns NumPy by default).

    model = SimCSE()                                  # the embedded all-MiniLM-L6-v2
    model = SimCSE("runs/quickstart")                 # a saved simcse model, ST directory or HF model
    model.similarity("A man plays.", "Someone plays.")        # float
    model.build_index(["...", "..."]); model.search("query")  # [(sentence, score), ...]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simcse.encoder import Encoder
from simcse.errors import SimCSEError
from simcse.index import VectorIndex

SENTENCES_FILE = "sentences.jsonl"
MODEL_FILE = "model.json"


def read_sentence_file(path: str | os.PathLike) -> list[str]:
    """One sentence per line (UTF-8); blank lines are skipped."""
    from simcse.data import read_txt

    return [row[0] for row in read_txt(Path(path)).rows]


class SimCSE:
    def __init__(
        self,
        model_name_or_path: str | os.PathLike | Encoder | None = None,
        pooler: str | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
        dtype: torch.dtype | None = None,
    ):
        if isinstance(model_name_or_path, Encoder):
            self.encoder = model_name_or_path
        else:
            self.encoder = Encoder.load(model_name_or_path, pooler, max_length=max_length)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoder.to(device)
        self.encoder.eval()
        self.batch_size = batch_size
        self.dtype = dtype
        self.index: VectorIndex | None = None
        self.sentences: list[str] = []

    @property
    def dim(self) -> int:
        return self.encoder.dim

    # ------------------------------------------------------------------ encode / similarity
    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int | None = None,
        normalize: bool = True,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        show_progress: bool = False,
        output: str = "numpy",
        **kwargs: Any,
    ) -> np.ndarray | torch.Tensor:
        """Embeddings in input order (length-sorted batches inside). One string gives one vector (dim,);
        a list gives (n, dim). ``output`` is ``"numpy"`` or ``"torch"``.

        MTEB calls ``encode(DataLoader, task_metadata=..., ...)``; that form is accepted too.
        """
        if not isinstance(sentences, (str, list, tuple)) and _looks_like_mteb_loader(sentences):
            sentences = _texts_from_mteb_loader(sentences)
        if "return_numpy" in kwargs:  # the original tool's flag
            output = "numpy" if kwargs.pop("return_numpy") else "torch"
        if "normalize_to_unit" in kwargs:
            normalize = bool(kwargs.pop("normalize_to_unit"))
        if output not in ("numpy", "torch"):
            raise SimCSEError(f"output must be 'numpy' or 'torch', got {output!r}")
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if any(not isinstance(t, str) for t in texts):
            raise SimCSEError("encode() takes a string or a list of strings")
        if device is not None:
            self.encoder.to(device)
        matrix = self.encoder.encode(
            texts, batch_size or self.batch_size, normalize, max_length, self.dtype, show_progress
        )
        result = matrix[0] if single else matrix
        return torch.from_numpy(result) if output == "torch" else result

    def similarity(self, queries: str | Sequence[str], keys: str | Sequence[str]) -> float | np.ndarray:
        """Cosine similarity: a float for two strings, else a (len(queries), len(keys)) matrix."""
        q = self.encode([queries] if isinstance(queries, str) else queries)
        k = self.encode([keys] if isinstance(keys, str) else keys)
        scores = q @ k.T
        if isinstance(queries, str) and isinstance(keys, str):
            return float(scores[0, 0])
        if isinstance(queries, str):
            return scores[0]
        if isinstance(keys, str):
            return scores[:, 0]
        return scores

    # ------------------------------------------------------------------ index
    def build_index(
        self,
        sentences_or_file_path: str | os.PathLike | Sequence[str],
        index: str = "auto",
        use_faiss: bool | None = None,
        batch_size: int | None = None,
        show_progress: bool = False,
        **index_options: Any,
    ) -> SimCSE:
        """Encode a collection (a list, or a text file with one sentence per line) into a new index."""
        sentences = self._collection(sentences_or_file_path)
        vectors = self.encode(sentences, batch_size=batch_size, show_progress=show_progress)
        self.index = VectorIndex(self.dim, index, use_faiss=use_faiss, **index_options)
        self.index.add(vectors)
        self.sentences = list(sentences)
        return self

    def add_to_index(
        self, sentences_or_file_path: str | os.PathLike | Sequence[str], batch_size: int | None = None
    ) -> SimCSE:
        if self.index is None:
            return self.build_index(sentences_or_file_path, batch_size=batch_size)
        sentences = self._collection(sentences_or_file_path)
        self.index.add(self.encode(sentences, batch_size=batch_size))
        self.sentences.extend(sentences)
        return self

    def search(
        self, queries: str | Sequence[str], top_k: int = 5, threshold: float | None = None
    ) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
        """Most similar indexed sentences, best first, as (sentence, cosine); a list per query for a list."""
        if self.index is None or len(self.index) == 0:
            raise SimCSEError("no index: call build_index() or load_index() first")
        single = isinstance(queries, str)
        scores, ids = self.index.search(self.encode([queries] if single else list(queries)), top_k)
        results = []
        for row_scores, row_ids in zip(scores, ids):
            hits = [(self.sentences[i], float(s)) for s, i in zip(row_scores, row_ids) if i >= 0]
            if threshold is not None:
                hits = [h for h in hits if h[1] >= threshold]
            results.append(hits)
        return results[0] if single else results

    def save_index(self, directory: str | os.PathLike) -> Path:
        if self.index is None:
            raise SimCSEError("no index to save")
        directory = Path(directory)
        self.index.save(directory)
        tmp = directory / (SENTENCES_FILE + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for s in self.sentences:
                f.write(json.dumps(s, ensure_ascii=False) + "\n")
        os.replace(tmp, directory / SENTENCES_FILE)
        model = {
            "source": self.encoder.source,
            "fingerprint": self.encoder.fingerprint(),
            **self.encoder.describe(),
        }
        (directory / MODEL_FILE).write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
        return directory

    def load_index(self, directory: str | os.PathLike, check_model: bool = True) -> SimCSE:
        directory = Path(directory)
        index = VectorIndex.load(directory)
        path = directory / SENTENCES_FILE
        try:
            with path.open(encoding="utf-8") as f:
                sentences = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError as e:
            raise SimCSEError(f"{path}: not found; is {directory} an index directory?") from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SimCSEError(f"{path}: cannot read the indexed sentences ({e})") from e
        if len(sentences) != len(index):
            raise SimCSEError(f"{directory}: {len(sentences)} sentences but {len(index)} vectors")
        if check_model and (directory / MODEL_FILE).exists():
            saved = json.loads((directory / MODEL_FILE).read_text(encoding="utf-8"))
            if saved.get("dim") != self.dim:
                raise SimCSEError(
                    f"{directory}: built with a {saved.get('dim')}-dim model, this one has {self.dim}"
                )
            if saved.get("fingerprint") != self.encoder.fingerprint():
                raise SimCSEError(
                    f"{directory}: built with another model ({saved.get('source')}); "
                    "load the same model or pass check_model=False"
                )
        self.index, self.sentences = index, sentences
        return self

    def _collection(self, sentences_or_file_path: str | os.PathLike | Sequence[str]) -> list[str]:
        if isinstance(sentences_or_file_path, (str, os.PathLike)) and not isinstance(
            sentences_or_file_path, str
        ):
            return read_sentence_file(sentences_or_file_path)
        if isinstance(sentences_or_file_path, str):
            if Path(sentences_or_file_path).is_file():
                return read_sentence_file(sentences_or_file_path)
            raise SimCSEError(f"{sentences_or_file_path}: file not found (pass a list to index sentences)")
        sentences = list(sentences_or_file_path)
        if not sentences:
            raise SimCSEError("nothing to index")
        return sentences


# ---------------------------------------------------------------------------------------------- MTEB
def _looks_like_mteb_loader(obj: Any) -> bool:
    return hasattr(obj, "dataset") and hasattr(obj, "__iter__")


def _texts_from_mteb_loader(loader: Iterable[dict]) -> list[str]:
    texts: list[str] = []
    for batch in loader:
        if "text" not in batch:
            raise SimCSEError("SimCSE encodes text only; this MTEB task gives no 'text' field")
        texts.extend(batch["text"])
    return texts
