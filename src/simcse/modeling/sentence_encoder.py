"""What every sentence encoder offers the evaluator, the API, the indexes and the service
(:class:`SentenceEncoder`, with the optional abilities' defaults, so that callers ask rather than probe),
and the encode loop of the encoders that tokenize (:class:`TokenizedEncoder`): the PyTorch
:class:`~simcse.modeling.encoder.Encoder` and an exported graph's
:class:`~simcse.modeling.graph_encoder.GraphEncoder` share it, so both tokenise, batch and order alike."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from simcse.core.errors import SimCSEError


class SentenceEncoder:
    """Sentences in, one float32 vector each out. Subclasses set ``source`` (the name to show), ``pooler``
    and ``dim`` and implement ``encode(sentences, batch_size=128, normalize=False, max_length=None,
    dtype=None, show_progress=False) -> np.ndarray`` (float32, row i for sentence i; an encoder without
    tokens or precisions ignores what does not apply) and :meth:`fingerprint`; the training-free baselines
    (:mod:`simcse.baselines`) are encoders too.

    Optional abilities, None where an encoder has none:

    - ``max_length``: the tokens it truncates at (a word-vector baseline has no limit);
    - ``prompt``: PromptBERT's :class:`~simcse.modeling.prompt.Prompt` (pooler ``prompt``);
    - ``pair_similarity(a, b) -> scores``: an encoder that scores pairs and has no sentence vectors (WMD,
      WRD); the evaluator scores STS with it;
    - ``fit_postprocess(raw matrix) -> function``: a post-processing fitted on a set of sentences' ``raw``
      vectors (SIF's and uSIF's common components, BERT-flow), which the evaluator fits per task.
    """

    source: str
    pooler: str
    dim: int
    max_length: int | None = None  # tokens it truncates at; None: an encoder without a token limit
    prompt: Any = None
    pair_similarity: Callable[[Sequence[str], Sequence[str]], np.ndarray] | None = None
    fit_postprocess: Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]] | None = None

    def fingerprint(self) -> str:
        """A short hash of what decides the vectors (weights, pooling setup): keys embedding caches."""
        raise NotImplementedError

    @property
    def inference_pooler(self) -> str:
        """The pooler as :meth:`encode` applies it."""
        return self.pooler

    def check_max_length(self, max_length: int | None) -> int | None:
        """``max_length`` refused unless this encoder can truncate there (an encoder without tokens takes
        any).

        Args:
            max_length: tokens per sentence, or None for the encoder's own limit."""
        return max_length

    def encoding_precision(self, precision: str | None, dtype: torch.dtype | None) -> tuple[Any, str | None]:
        """The dtype to encode in and the line saying which and why (None: nothing to say); this default
        returns ``dtype`` as given.

        Args:
            precision: auto | fp32 | bf16 | fp16, as the caller asked (None: auto).
            dtype: a torch dtype that overrides ``precision``."""
        return dtype, None

    def to(self, device: Any) -> SentenceEncoder:
        """Where it runs; an encoder without weights on a device stays as it is.

        Args:
            device: a torch device or its name."""
        return self

    def eval(self) -> SentenceEncoder:
        """Inference mode; an encoder without a training mode stays as it is."""
        return self

    def weights_key(self) -> tuple:
        """Changes whenever the weights do (an encoder whose weights never change: always the same)."""
        return ()

    def describe(self) -> dict[str, Any]:
        """What the encoder is, as an index directory's ``model.json`` records it: pooler (as applied by
        :meth:`encode`), dim and source."""
        return {"pooler": self.inference_pooler, "dim": self.dim, "source": self.source}


def require_sentence_vectors(encoder: SentenceEncoder, use: str) -> None:
    """Refuse ``use`` for an encoder that scores pairs and has no sentence vectors (WMD, WRD).

    Raises:
        SimCSEError: the encoder has ``pair_similarity``."""
    if encoder.pair_similarity is not None:
        raise SimCSEError(
            f"{use}: {encoder.source} scores pairs of sentences and has no sentence vectors; evaluate it on "
            "STS tasks (simcse eval)"
        )


def require_fixed_vectors(encoder: SentenceEncoder, use: str) -> None:
    """Refuse ``use`` (an index, a search, a similarity of sentences, a corpus encoded in blocks) for an
    encoder without sentence vectors (:func:`require_sentence_vectors`) or whose vectors depend on the set
    encoded together: SIF's and uSIF's common components and BERT-flow are fitted on the sentences of each
    call, so vectors of different calls do not compare.

    Raises:
        SimCSEError: the encoder has ``pair_similarity`` or ``fit_postprocess``."""
    require_sentence_vectors(encoder, use)
    if encoder.fit_postprocess is not None:
        raise SimCSEError(
            f"{use}: {encoder.source} fits its post-processing on the sentences encoded together, so sentences "
            "of different calls cannot be compared; encode one whole set at a time, or use simcse eval"
        )


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm, as the encoders' ``normalize=True`` does
    (``torch.nn.functional.normalize``, float32; a zero row stays zero)."""
    return torch.nn.functional.normalize(torch.from_numpy(np.asarray(matrix, np.float32)), dim=-1).numpy()


@dataclass
class Tokenized:
    """Sentences tokenised once, kept unpadded; batches are padded on demand (dynamic padding)."""

    input_ids: list[list[int]]
    pad_token_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> np.ndarray:
        """Each sentence's token count, as int64."""
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def token_ids(tokenizer: Any, texts: list[str], max_length: int, special: bool = True) -> list[list[int]]:
    """Each text's token ids, truncated to ``max_length`` (``special``: with the tokenizer's [CLS]/[SEP])."""
    return tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        add_special_tokens=special,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]


def pad_batch(sequences: Sequence[Sequence[int]], pad_token_id: int, length: int | None = None) -> dict:
    """Right-pad token id lists into ``input_ids`` and ``attention_mask`` tensors (to ``length`` if given,
    else to the longest sequence)."""
    longest = max(len(s) for s in sequences)
    longest = max(longest, length or 0)
    ids = torch.full((len(sequences), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


class TokenizedEncoder(SentenceEncoder):
    """The encode loop of an encoder with a tokenizer: truncation at ``max_length`` (at most
    ``position_limit``), the prompt's template when there is one, length-sorted batches (longest first)
    with dynamic padding, float32 output in input order. Subclasses set ``tokenizer``, ``max_length``,
    ``position_limit`` and implement :meth:`batch_runner`."""

    tokenizer: Any
    max_length: int
    position_limit: int | None = None

    def batch_runner(self, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
        """A context whose value maps a padded batch (``input_ids``, ``attention_mask``) to its float32
        embeddings.

        Args:
            dtype: the precision asked for (an encoder may run in its own: an exported graph's is fixed)."""
        raise NotImplementedError

    def check_max_length(self, max_length: int | None) -> int:
        """``max_length`` as given (None: the model's :attr:`max_length`), refused with a SimCSEError unless
        an integer from 1 to the model's position limit.

        Args:
            max_length: tokens per sentence (special tokens and a prompt's template included), or None."""
        if max_length is None:
            return self.max_length
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise SimCSEError(f"max_length must be an integer >= 1, got {max_length!r}")
        if self.position_limit is not None and max_length > self.position_limit:
            raise SimCSEError(
                f"max_length {max_length} exceeds what {self.source} supports ({self.position_limit} tokens)"
            )
        return max_length

    def tokenize(self, sentences: Sequence[str], max_length: int | None = None) -> Tokenized:
        """The token ids of ``sentences``, truncated at ``max_length`` (with pooler prompt: each sentence put
        in the first template, only the sentence truncated so that the whole fits).

        Args:
            sentences: a list of sentences; a single string is a TypeError.
            max_length: tokens per sentence, special tokens included (None: :attr:`max_length`)."""
        if isinstance(sentences, str):
            raise TypeError("tokenize() takes a list of sentences, not a single string")
        if self.prompt is not None:  # the sentence in the template; only the sentence is truncated
            ids = self.prompt.tokenize(self.tokenizer, sentences, self.check_max_length(max_length))
            return Tokenized(ids, self.tokenizer.pad_token_id)
        ids = token_ids(self.tokenizer, list(sentences), self.check_max_length(max_length))
        return Tokenized(ids, self.tokenizer.pad_token_id)

    def iter_batches(self, tokens: Tokenized, batch_size: int) -> Iterator[tuple[np.ndarray, dict]]:
        """Length-sorted batches (longest first, ties in input order) as (original indices, padded tensors).

        Args:
            tokens: the tokenised sentences.
            batch_size: sentences per batch."""
        order = np.argsort(-tokens.lengths(), kind="stable")
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield idx, pad_batch([tokens.input_ids[i] for i in idx], tokens.pad_token_id)

    def encode_tokenized(
        self,
        tokens: Tokenized,
        batch_size: int = 128,
        normalize: bool = False,
        dtype: torch.dtype | None = None,
        show_progress: bool = False,
    ) -> torch.Tensor:
        """Embeddings (n, dim) as float32 on the CPU, in input order.

        Args:
            tokens: the tokenised sentences (:meth:`tokenize`).
            batch_size: sentences per batch.
            normalize: divide each row by its L2 norm (``torch.nn.functional.normalize``, in float32).
            dtype: the precision to run in (None: the weights' own, fp32 for a loaded model).
            show_progress: a tqdm bar over the batches."""
        batches = self.iter_batches(tokens, batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=-(-len(tokens) // batch_size), desc="encode", unit="batch")
        with self.batch_runner(dtype) as run:
            out = torch.empty((len(tokens), self.dim), dtype=torch.float32)
            for idx, batch in batches:
                emb = run(batch)
                if normalize:
                    emb = torch.nn.functional.normalize(emb, dim=-1)
                out[torch.from_numpy(idx)] = emb.cpu()
        return out

    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int = 128,
        normalize: bool = False,
        max_length: int | None = None,
        dtype: torch.dtype | None = None,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Encode sentences into a float32 array (n, dim), row i for sentence i, as the model pools them
        (after the MLP when it applies one at inference), not unit-normalised by default.

        Unlike :meth:`simcse.use.api.SimCSE.encode`, which returns unit vectors unless asked not to
        (``normalize_to_unit=True``, as the original tool), this does not normalise by default
        (``normalize=False``); with ``normalize=True`` each row is divided by its L2 norm
        (``torch.nn.functional.normalize`` on the float32 output of each batch), exactly what SimCSE's default
        does. Other defaults differ too: 128 sentences per batch (SimCSE: 64), truncation at the model's
        :attr:`max_length` (SimCSE: 128 tokens, capped at it), the weights' precision unless ``dtype`` is
        given (SimCSE: its ``precision``, auto by default), a list only (no single string), NumPy only.

        Args:
            sentences: the sentences (a list; an empty one gives a (0, dim) array).
            batch_size: sentences per batch (batches are length-sorted; the output keeps input order).
            normalize: unit-normalise each row (L2, in float32); default False.
            max_length: tokens per sentence, special tokens included (None: :attr:`max_length`); refused
                beyond the model's position limit.
            dtype: the precision to run in (an :class:`~simcse.modeling.encoder.Encoder` in bf16 on a CPU uses
                a bf16 copy of its weights, elsewhere autocast; an exported graph runs in its own); None: the
                weights' (fp32).
            show_progress: a tqdm bar over the batches.

        Returns:
            A float32 array (n, dim)."""
        if isinstance(sentences, str):  # before the empty check: "" is a string, not an empty list
            raise TypeError("encode() takes a list of sentences, not a single string")
        if len(sentences) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self.tokenize(sentences, max_length)
        return self.encode_tokenized(tokens, batch_size, normalize, dtype, show_progress).numpy()
