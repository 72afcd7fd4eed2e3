"""Where a baseline's word vectors come from: the input token embeddings of any Hugging Face encoder (its
tokenizer splits the sentence), or a word-vector file in the common text / word2vec text format (``word v1
v2 ...`` per line, an optional ``count dim`` first line; whitespace tokens, looked up as given, then
lower-cased; unknown words are skipped)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from simcse.core.errors import DataError

VECTOR_SUFFIXES = (".txt", ".vec", ".w2v")


class WordVectors:
    """``tokens(sentence)`` -> the sentence's known tokens; ``matrix[index[token]]`` their vectors."""

    source: str
    tokens_of: dict[str, int]
    matrix: np.ndarray

    def tokens(self, sentence: str) -> list[str]:
        """The sentence's tokens that have a vector, in order (repeats kept)."""
        raise NotImplementedError

    def vectors(self, tokens: list[str]) -> np.ndarray:
        """The vectors (len(tokens), dim) of ``tokens``, each a known token; an empty list gives (0, dim)."""
        if not tokens:
            return np.zeros((0, self.matrix.shape[1]), dtype=np.float32)
        return self.matrix[[self.tokens_of[t] for t in tokens]]

    def fingerprint(self) -> str:
        """A short hash of the source's name and the vector matrix."""
        h = hashlib.sha256(self.source.encode())
        h.update(np.ascontiguousarray(self.matrix).tobytes())
        return h.hexdigest()[:16]

    def display(self, token: str) -> str:
        """The token as a word, for frequency lookups (a WordPiece ``##ing`` -> ``ing``)."""
        return token[2:] if token.startswith("##") else token.lstrip("Ġ▁")


class TokenEmbeddings(WordVectors):
    """The input embedding matrix of an HF encoder and its tokenizer (special tokens left out)."""

    def __init__(self, name_or_path: str | None):
        from simcse.modeling.model_dir import read_backbone

        files = read_backbone(name_or_path)
        self.source = files.source
        self.tokenizer = files.tokenizer
        self.matrix = files.backbone.get_input_embeddings().weight.detach().float().cpu().numpy()
        vocab = self.tokenizer.get_vocab()
        self.tokens_of = dict(vocab)
        self.special = set(self.tokenizer.all_special_tokens)

    def tokens(self, sentence: str) -> list[str]:
        """The tokenizer's tokens of ``sentence``, leaving out special tokens and unknown ones."""
        return [t for t in self.tokenizer.tokenize(sentence) if t not in self.special and t in self.tokens_of]


class FileVectors(WordVectors):
    """A text / word2vec-text file, read line by line. A word may contain spaces (GloVe 840B has ``. . .``):
    the last ``dim`` fields of a line are the numbers, the rest is the word."""

    def __init__(self, path: str | Path):
        path = Path(path)
        self.source = str(path)
        words: list[str] = []
        rows: list[np.ndarray] = []
        dim = None
        try:
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    parts = line.rstrip("\n").rstrip().split(" ")
                    if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                        dim = int(parts[1])  # word2vec's "count dim" header
                        continue
                    if len(parts) < 2:
                        continue
                    if dim is None:
                        dim = _numbers_at_end(parts)
                    if len(parts) < dim + 1:
                        raise DataError(path, f"expected a word and {dim} numbers", line=number)
                    try:
                        rows.append(np.asarray(parts[-dim:], dtype=np.float32))
                    except ValueError:
                        raise DataError(path, "expected a word and its numbers", line=number) from None
                    words.append(" ".join(parts[:-dim]))
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(
                path, f"cannot read the word vectors ({getattr(e, 'strerror', None) or e})"
            ) from None
        if not rows:
            raise DataError(path, "no word vectors")
        self.matrix = np.stack(rows)
        self.tokens_of = {}
        for i, word in enumerate(words):
            self.tokens_of.setdefault(word, i)

    def tokens(self, sentence: str) -> list[str]:
        """The whitespace-separated words of ``sentence`` found in the file, each as given or else
        lower-cased."""
        out = []
        for word in sentence.split():
            key = word if word in self.tokens_of else word.lower()
            if key in self.tokens_of:
                out.append(key)
        return out


def load_word_vectors(source: str | None) -> WordVectors:
    """A word-vector file (by suffix, or any existing file) or an HF encoder (id, directory, none = embedded)."""
    if source and (Path(source).suffix in VECTOR_SUFFIXES or Path(source).is_file()):
        return FileVectors(source)
    return TokenEmbeddings(source)


def _numbers_at_end(parts: list[str]) -> int:
    """How many of a line's last fields are numbers (the vector's dimension)."""
    count = 0
    for field in reversed(parts[1:]):
        try:
            float(field)
        except ValueError:
            break
        count += 1
    return count
