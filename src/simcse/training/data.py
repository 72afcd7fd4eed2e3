"""Training batches: a deterministic, resumable batch plan, views, dynamic padding, and a background
prefetch thread. The files themselves are read by :mod:`simcse.data.sentence_files`."""

from __future__ import annotations

import queue
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from simcse.data.augment import Augmentation, augmented, neighbour, row_rng
from simcse.modeling.sentence_encoder import pad_batch, token_ids
from simcse.training.methods.base import CollatePiece


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
        """Full batches per epoch, plus the last partial one when it has at least two rows (a contrastive
        batch needs two) and ``drop_last`` is off."""
        full, rest = divmod(self.num_rows, self.batch_size)
        return full + (1 if rest >= 2 and not self.drop_last else 0)

    def order(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s row order: a permutation seeded by (seed, epoch), or the file's order without
        shuffling."""
        if not self.shuffle:
            return np.arange(self.num_rows)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_rows)

    def batch(
        self, epoch: int, step: int, rank: int = 0, world_size: int = 1, order: np.ndarray | None = None
    ):
        """Process ``rank``'s share of global batch ``step`` of epoch ``epoch`` (``order``: that epoch's
        order, if already computed); each process gets len // world_size rows."""
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
class Collator:
    """Rows -> one padded batch of ``rows x views`` sequences, view-major within each row.

    unsup: every sentence appears twice (two dropout masks = the positive pair), tokenised once; with
    ``augment``, the second view is the sentence changed by those pieces (the paper's Table 1); with
    ``next_window`` (the paper's next-sentence objectives) it is one of the next rows of ``corpus``.
    sup: the columns are the views (anchor, positive[, hard negative]).
    ``pad_to_length`` pads every batch to one length (static shapes for ``torch.compile``); otherwise
    batches are padded to their longest sequence. No randomness here (it may run in a prefetch thread):
    MLM masking happens in the training loop; the per-row changes (augmentation, the methods' pieces) draw
    from the row's own seeded generator.

    ``pieces`` (:class:`~simcse.training.methods.base.CollatePiece`, from the run's methods) change the
    token ids of each row, append copies of views, and add tensors, in order.
    With ``prompt`` (pooler prompt, a :class:`~simcse.modeling.prompt.Prompt`) each sentence, truncated to
    ``max_seq_len`` tokens, is put in its view's template (PromptBERT: the anchor in the first, the others
    in the second; a copy of a view in that view's), and ``template`` says which each sequence got.
    """

    def __init__(
        self,
        tokenizer,
        max_seq_len: int,
        views: int,
        pad_to_length: int | None = None,
        augment: Sequence[Augmentation] = (),
        seed: int = 0,
        next_window: int = 0,
        corpus: Sequence[tuple[str, ...]] | None = None,
        prompt: Any = None,
        pieces: Sequence[CollatePiece] = (),
    ):
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.views = views
        self.pad_to_length = pad_to_length
        self.augment = list(augment)
        self.seed = seed
        self.next_window = next_window  # > 0: the positive is one of the next rows of ``corpus``
        self.corpus = corpus
        self.prompt = prompt
        self.pieces = list(pieces)
        self.copies = [view for piece in self.pieces for view in piece.copies]

    def __call__(
        self, rows: Sequence[tuple[str, ...]], epoch: int = 0, row_ids: Sequence[int] | None = None
    ) -> dict[str, torch.Tensor]:
        """``epoch`` and ``row_ids`` (the rows' indices in the file) seed each row's augmentation."""
        keys = range(len(rows)) if row_ids is None else row_ids
        rows, columns = self.positives(rows, epoch, keys)
        flat = [s for row in rows for s in row]
        special = self.prompt is None  # a prompt brings the special tokens with its template
        ids = token_ids(self.tokenizer, flat, self.max_seq_len, special)
        per_row = [ids[i * columns : (i + 1) * columns] for i in range(len(rows))]
        if columns == 1 and self.views - len(self.copies) >= 2:
            per_row = [row * 2 for row in per_row]
        for piece in self.pieces:
            piece.views(per_row, keys, epoch)
        sources = list(range(len(per_row[0]))) + self.copies  # the view each sequence is (a copy of)
        per_row = [[*row, *(row[v] for v in self.copies)] for row in per_row]
        templates = None
        if self.prompt is not None:
            templates = [self.prompt.view_template(v) for _ in per_row for v in sources]
            flat_ids = [x for row in per_row for x in row]
            wrapped = [self.prompt.templates[t].wrap(x) for t, x in zip(templates, flat_ids)]
            per_row = [wrapped[i * len(sources) : (i + 1) * len(sources)] for i in range(len(per_row))]
        batch = pad_batch(
            [x for row in per_row for x in row], self.tokenizer.pad_token_id, self.pad_to_length
        )
        batch["views"] = torch.tensor(self.views)
        for piece in self.pieces:
            batch.update(piece.tensors(flat, columns))
        if templates is not None:
            batch["template"] = torch.tensor(templates, dtype=torch.long)
        return batch

    def positives(
        self, rows: Sequence[tuple[str, ...]], epoch: int, keys: Sequence[int]
    ) -> tuple[Sequence[tuple[str, ...]], int]:
        """One-sentence rows with their positive as a second column, where it is another text: a neighbour
        (the next-sentence objectives) or the sentence augmented (:mod:`simcse.data.augment`); and the
        number of columns."""
        columns = len(rows[0])
        if self.next_window and columns == 1:
            corpus = self.corpus if self.corpus is not None else rows
            rows = [
                (
                    row[0],
                    corpus[
                        neighbour(
                            int(key), len(corpus), self.next_window, row_rng(self.seed, epoch, int(key))
                        )
                    ][0],
                )
                for row, key in zip(rows, keys)
            ]
            columns = 2
        if self.augment and columns == 1:
            rows = [
                (row[0], augmented(row[0], self.augment, row_rng(self.seed, epoch, int(key))))
                for row, key in zip(rows, keys)
            ]
            columns = 2
        return rows, columns


class Prefetcher:
    """Collates the next batches in a background thread (tokenisers release the GIL), optionally into
    pinned memory for non-blocking copies to the GPU, so the accelerator does not wait for the data."""

    def __init__(
        self,
        batches: Iterator[tuple],
        rows: list[tuple[str, ...]],
        collate: Collator,
        depth: int = 4,
        pin_memory: bool = False,
    ):
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
        """Stop the prefetch thread (waiting up to 5 s for it)."""
        self._stop.set()
        self._thread.join(timeout=5)
