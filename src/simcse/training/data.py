"""Training batches: a deterministic, resumable batch plan, views, dynamic padding, MLM masking, and a
background prefetch thread. The files themselves are read by :mod:`simcse.sentence_files`."""

from __future__ import annotations

import queue
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from simcse.augment import Augmentation, augmented, neighbour, repeat_subwords, row_rng
from simcse.errors import DataError


# ---------------------------------------------------------------------------------------------- batching
@dataclass
class BatchPlan:
    """Which rows make up each step: a seeded permutation per epoch, cut into global batches.

    Every process computes the same plan and takes its own slice of each global batch, so the data position
    is just (epoch, step in epoch).
    """

    num_rows: int
    batch_size: int
    seed: int
    shuffle: bool = True
    drop_last: bool = False

    @property
    def steps_per_epoch(self) -> int:
        full, rest = divmod(self.num_rows, self.batch_size)
        return full + (1 if rest >= 2 and not self.drop_last else 0)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_rows)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_rows)

    def batch(
        self, epoch: int, step: int, rank: int = 0, world_size: int = 1, order: np.ndarray | None = None
    ):
        order = self.order(epoch) if order is None else order
        rows = order[step * self.batch_size : (step + 1) * self.batch_size]
        per_rank = len(rows) // world_size
        return rows[rank * per_rank : (rank + 1) * per_rank]

    def iterate(
        self, start_epoch: int, start_step: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple]:
        """Yield (epoch, step_in_epoch, row indices) forever from the given position."""
        epoch, step = start_epoch, start_step
        while True:
            order = self.order(epoch)
            while step < self.steps_per_epoch:
                yield epoch, step, self.batch(epoch, step, rank, world_size, order)
                step += 1
            epoch, step = epoch + 1, 0


# ---------------------------------------------------------------------------------------------- collation
class MLMMasker:
    """BERT masking of a copy of the inputs: 15% of real tokens; 80% [MASK], 10% random, 10% unchanged."""

    def __init__(self, tokenizer, probability: float = 0.15):
        if tokenizer.mask_token_id is None:
            raise DataError(
                getattr(tokenizer, "name_or_path", "tokenizer"), "has no [MASK] token; MLM is impossible"
            )
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.probability = probability

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ids = input_ids.clone()
        labels = input_ids.clone()
        maskable = attention_mask.bool() & ~torch.isin(input_ids, self.special)
        chosen = torch.bernoulli(torch.full(ids.shape, self.probability)).bool() & maskable
        labels[~chosen] = -100
        replace = torch.bernoulli(torch.full(ids.shape, 0.8)).bool() & chosen
        ids[replace] = self.mask_id
        randomize = torch.bernoulli(torch.full(ids.shape, 0.5)).bool() & chosen & ~replace
        ids[randomize] = torch.randint(self.vocab_size, ids.shape, dtype=torch.long)[randomize]
        return ids, labels


class Collator:
    """Rows -> one padded batch of ``rows x views`` sequences, view-major within each row.

    unsup: every sentence appears twice (two dropout masks = the positive pair), tokenised once; with
    ``augment``, the second view is the sentence changed by those pieces (the paper's Table 1).
    sup: the columns are the views (anchor, positive[, hard negative]).
    ``pad_to_length`` pads every batch to one length (static shapes for ``torch.compile``); otherwise
    batches are padded to their longest sequence. No randomness here (it may run in a prefetch thread):
    MLM masking happens in the training loop; the per-row pieces (augmentation, ``word_repetition``) draw
    from the row's own seeded generator.

    ``plain_copy`` (SimCSE++): the anchor's tokens once more as the last view (encoded with dropout off).
    ``word_repetition`` (ESimCSE): view 1's subwords repeated (:func:`simcse.augment.repeat_subwords`).
    ``guide_tokenizer`` (false-negative filtering): the rows' texts also as that tokenizer's ids
    (``guide_input_ids``, ``guide_attention_mask``, ``guide_columns``), for the guide model.
    With ``prompt`` (pooler prompt, a :class:`~simcse.modeling.prompt.Prompt`) each sentence, truncated to
    ``max_seq_len`` tokens, is put in its view's template (PromptBERT: the anchor in the first, the others
    in the second), and ``template`` says which each sequence got.
    """

    def __init__(self, tokenizer, max_seq_len: int, views: int, pad_to_length: int | None = None,
                 augment: Sequence[Augmentation] = (), seed: int = 0, next_window: int = 0,
                 corpus: Sequence[tuple[str, ...]] | None = None, plain_copy: bool = False,
                 word_repetition: float = 0.0, guide_tokenizer=None, prompt: Any = None):  # fmt: skip
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.views = views
        self.pad_to_length = pad_to_length
        self.augment = list(augment)
        self.seed = seed
        self.next_window = next_window  # > 0: the positive is one of the next rows of ``corpus``
        self.corpus = corpus
        self.plain_copy = plain_copy
        self.word_repetition = word_repetition
        self.guide_tokenizer = guide_tokenizer
        self.special = frozenset(tokenizer.all_special_ids)
        self.prompt = prompt

    def __call__(
        self, rows: Sequence[tuple[str, ...]], epoch: int = 0, row_ids: Sequence[int] | None = None
    ) -> dict[str, torch.Tensor]:
        """``epoch`` and ``row_ids`` (the rows' indices in the file) seed each row's augmentation."""
        columns = len(rows[0])
        if self.next_window and columns == 1:  # the next-sentence objectives: a neighbour is the positive
            keys = range(len(rows)) if row_ids is None else row_ids
            corpus = self.corpus if self.corpus is not None else rows
            rows = [(row[0], corpus[neighbour(int(key), len(corpus), self.next_window,
                                              row_rng(self.seed, epoch, int(key)))][0])
                    for row, key in zip(rows, keys)]  # fmt: skip
            columns = 2
        if self.augment and columns == 1:  # the positive view: the sentence augmented (simcse.augment)
            keys = range(len(rows)) if row_ids is None else row_ids
            rows = [(row[0], augmented(row[0], self.augment, row_rng(self.seed, epoch, int(key))))
                    for row, key in zip(rows, keys)]  # fmt: skip
            columns = 2
        flat = [s for row in rows for s in row]
        special = self.prompt is None  # a prompt brings the special tokens with its template
        ids = self.tokenizer(flat, truncation=True, max_length=self.max_seq_len, return_attention_mask=False,
                             return_token_type_ids=False, add_special_tokens=special)["input_ids"]  # fmt: skip
        per_row = [ids[i * columns : (i + 1) * columns] for i in range(len(rows))]
        if columns == 1 and self.views - self.plain_copy >= 2:
            per_row = [row * 2 for row in per_row]
        if self.word_repetition:
            keys = range(len(rows)) if row_ids is None else row_ids
            for row, key in zip(per_row, keys):
                rng = np.random.default_rng(
                    [self.seed, epoch, int(key), 1]
                )  # its own stream beside augment's
                row[1] = repeat_subwords(row[1], self.word_repetition, rng, self.special)
        if self.plain_copy:
            per_row = [[*row, row[0]] for row in per_row]
        templates = None
        if self.prompt is not None:  # the plain copy of the anchor (plain_copy) keeps the anchor's template
            last = len(per_row[0]) - 1
            views = [0 if self.plain_copy and v == last else v for v in range(last + 1)]
            templates = [self.prompt.view_template(v) for _ in per_row for v in views]
            flat_ids = [x for row in per_row for x in row]
            wrapped = [self.prompt.templates[t].wrap(x) for t, x in zip(templates, flat_ids)]
            per_row = [wrapped[i * (last + 1) : (i + 1) * (last + 1)] for i in range(len(per_row))]
        from simcse.modeling.encoder import pad_batch

        batch = pad_batch(
            [x for row in per_row for x in row], self.tokenizer.pad_token_id, self.pad_to_length
        )
        batch["views"] = torch.tensor(self.views)
        if self.guide_tokenizer is not None:
            guide = self.guide_tokenizer(flat, truncation=True, max_length=self.max_seq_len,
                                         return_attention_mask=False, return_token_type_ids=False)["input_ids"]  # fmt: skip
            padded = pad_batch(guide, self.guide_tokenizer.pad_token_id)
            batch["guide_input_ids"], batch["guide_attention_mask"] = (
                padded["input_ids"],
                padded["attention_mask"],
            )
            batch["guide_columns"] = torch.tensor(columns)
        if templates is not None:
            batch["template"] = torch.tensor(templates, dtype=torch.long)
        return batch


class Prefetcher:
    """Collates the next batches in a background thread (tokenisers release the GIL), optionally into
    pinned memory for non-blocking copies to the GPU, so the accelerator does not wait for the data."""

    def __init__(self, batches: Iterator[tuple], rows: list[tuple[str, ...]], collate: Collator, depth: int = 4,
                 pin_memory: bool = False):  # fmt: skip
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()

        def work() -> None:
            try:
                for epoch, step, idx in batches:
                    batch = collate([rows[i] for i in idx], epoch, idx)
                    if pin_memory:
                        batch = {k: v.pin_memory() for k, v in batch.items()}
                    if not self._put((epoch, step, idx, batch)):
                        return
            except BaseException as e:  # surfaced in the training loop
                self._put(e)

        self._thread = threading.Thread(target=work, name="simcse-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Wait for room in the queue; False once closed (so a full queue never blocks the thread's exit)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> tuple:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
