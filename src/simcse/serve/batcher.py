"""One encoder thread fed by a bounded queue: texts from concurrent requests are encoded together.

Requests call :meth:`EncodeBatcher.submit` and get a ``concurrent.futures.Future``; the single worker thread
takes whole jobs off the queue in arrival order, up to ``batch_size`` texts (one larger job alone), runs
``process`` once over all their texts and hands each job its rows. The model therefore never runs from two
threads at once, and the event loop never runs it. A job cancelled before the worker takes it (the request
timed out or the client left) is removed from the queue and never encoded. When a batch fails, its jobs are
retried one by one, so only the request that caused the failure gets the error.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

# texts -> (vectors (n, dim), token counts (n,))
ProcessFn = Callable[[list[str]], tuple[np.ndarray, np.ndarray]]


class QueueFull(Exception):
    """The queue holds ``capacity`` texts already: the caller should answer 503 and Retry-After."""


class ShuttingDown(Exception):
    """The batcher is closed (server shutdown)."""


class _Job:
    __slots__ = ("texts", "future")

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.future: Future = Future()


class EncodeBatcher:
    """The encoder thread: texts submitted by concurrent requests queue up (at most ``capacity``) and are
    encoded together by ``process`` in batches of whole requests of up to ``batch_size`` texts (a request
    larger than that is a batch of its own); when a batch fails, its requests are retried one by one so that
    one bad request fails alone."""

    def __init__(self, process: ProcessFn, batch_size: int, capacity: int):
        self.process = process
        self.batch_size = batch_size
        self.capacity = capacity
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._pending: deque[_Job] = deque()
        self._pending_texts = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        """Texts waiting in the queue (not counting the batch being encoded)."""
        return self._pending_texts

    def submit(self, texts: Sequence[str]) -> Future:
        """Queue texts; the future's result is (vectors, token_counts) for exactly these texts, in order."""
        job = _Job(list(texts))
        with self._lock:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            if self._pending_texts + len(job.texts) > self.capacity:
                raise QueueFull(f"{self._pending_texts} texts are waiting (queue size {self.capacity})")
            self._pending.append(job)
            self._pending_texts += len(job.texts)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="simcse-encoder", daemon=True)
                self._thread.start()
            self._wake.notify()
        job.future.add_done_callback(lambda f, job=job: self._drop_if_cancelled(job))
        return job.future

    def close(self, timeout: float | None = 5.0) -> None:
        """Fail the queued jobs, let the current batch finish, stop the thread."""
        with self._lock:
            self._closed = True
            pending, self._pending = list(self._pending), deque()
            self._pending_texts = 0
            self._wake.notify_all()
            thread = self._thread
        for job in pending:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(ShuttingDown("the server is shutting down"))
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # ------------------------------------------------------------------ worker
    def _drop_if_cancelled(self, job: _Job) -> None:
        if not job.future.cancelled():
            return
        with self._lock:
            for i, queued in enumerate(self._pending):
                if queued is job:
                    del self._pending[i]
                    self._pending_texts -= len(job.texts)
                    break

    def _take_batch(self) -> list[_Job] | None:
        """Whole jobs in arrival order, up to ``batch_size`` texts; None when closed and empty."""
        with self._lock:
            while not self._pending and not self._closed:
                self._wake.wait()
            if not self._pending:
                return None
            batch: list[_Job] = []
            size = 0
            while self._pending:
                job = self._pending[0]
                if batch and size + len(job.texts) > self.batch_size:
                    break
                self._pending.popleft()
                self._pending_texts -= len(job.texts)
                if job.future.set_running_or_notify_cancel():  # False: cancelled meanwhile, drop it
                    batch.append(job)
                    size += len(job.texts)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:
                continue
            texts = [t for job in batch for t in job.texts]
            try:
                vectors, counts = self.process(texts)
            except Exception as e:
                if len(batch) == 1:
                    batch[0].future.set_exception(e)
                else:  # one bad request must not fail the others batched with it: retry them one by one
                    for job in batch:
                        self._run_alone(job)
                continue
            start = 0
            for job in batch:
                end = start + len(job.texts)
                job.future.set_result((vectors[start:end], counts[start:end]))
                start = end

    def _run_alone(self, job: _Job) -> None:
        try:
            job.future.set_result(self.process(job.texts))
        except Exception as e:
            job.future.set_exception(e)
