"""An index directory: the vector index (:mod:`simcse.use.index`), its sentences (``sentences.jsonl``, one JSON
string a line, row i = vector i) and the model that built it (``model.json``: source, fingerprint, pooler,
dim). Written as a whole: every file under a temporary name first, renamed into place only when all are
written, so a failure midway leaves a previous index intact."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simcse.core.errors import IndexModelError, SimCSEError
from simcse.use.index import VectorIndex, discard_staged

SENTENCES_FILE = "sentences.jsonl"
MODEL_FILE = "model.json"


def save_index_dir(
    directory: Path, index: VectorIndex, sentences: Sequence[str], model: dict[str, Any]
) -> Path:
    """Write ``index``, its ``sentences`` and the ``model`` description into ``directory``: every file staged
    under a temporary name, then all renamed into place, the index description last; a failure while writing
    leaves a previous index there intact."""
    staged = index.stage(directory)  # the index description is last
    ours: list[tuple[Path, Path]] = []
    try:
        tmp = directory / (SENTENCES_FILE + ".tmp")
        ours.append((tmp, directory / SENTENCES_FILE))
        with tmp.open("w", encoding="utf-8") as f:
            for s in sentences:
                f.write(json.dumps(s, ensure_ascii=False) + "\n")
        tmp = directory / (MODEL_FILE + ".tmp")
        ours.append((tmp, directory / MODEL_FILE))
        tmp.write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
    except BaseException as e:
        discard_staged(staged + ours)
        if isinstance(e, OSError):
            raise SimCSEError(f"{directory}: cannot save the index ({e})") from e
        raise
    index.commit(directory, staged[:-1] + ours + staged[-1:])
    return directory


def read_index_model(directory: Path) -> dict[str, Any]:
    """The description of the model that built the index (``model.json``)."""
    model_path = directory / MODEL_FILE
    try:
        saved = json.loads(model_path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError as e:
        raise IndexModelError(
            f"{model_path}: not found, so the model that built this index is unknown",
            "pass check_model=False to load it anyway",
        ) from e
    except (OSError, ValueError) as e:
        raise SimCSEError(f"{model_path}: cannot read the model description ({e})") from e
    return saved


def load_index_dir(directory: Path, dim: int) -> tuple[VectorIndex, list[str]]:
    """The index and its sentences, checked to hold ``dim``-dim vectors and one sentence per vector."""
    index = VectorIndex.load(directory)
    if index.dim != dim:
        raise SimCSEError(f"{directory}: {index.dim}-dim vectors, this model gives {dim}")
    sentences = read_sentences(directory / SENTENCES_FILE)
    if len(sentences) != len(index):
        raise SimCSEError(f"{directory}: {len(sentences)} sentences but {len(index)} vectors")
    return index, sentences


def read_sentences(path: Path) -> list[str]:
    """The sentences of ``sentences.jsonl`` (one JSON string a line, blank lines skipped); any other line, or
    a missing file, is a SimCSEError naming it."""
    try:
        with path.open(encoding="utf-8") as f:
            sentences = []
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SimCSEError(f"{path}:{number}: not a JSON string ({e.msg})") from e
                if not isinstance(value, str):
                    raise SimCSEError(f"{path}:{number}: not a JSON string")
                sentences.append(value)
    except FileNotFoundError as e:
        raise SimCSEError(f"{path}: not found; the index directory is incomplete") from e
    except (OSError, UnicodeDecodeError) as e:
        raise SimCSEError(f"{path}: cannot read the indexed sentences ({e})") from e
    return sentences
