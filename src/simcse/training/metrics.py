"""What a run reports: ``metrics.jsonl`` and the experiment trackers (``report_to``:
:mod:`simcse.training.trackers`), the logging window's averages, and the lines it prints to the terminal."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from simcse.data.sentence_files import TrainingData
from simcse.training.config import TrainConfig
from simcse.training.trackers import (
    Tracker,
    final_results,
    resolve_report_to,
    scalars,
    start_trackers,
    warn_dropped,
)


class MetricsLog:
    """metrics.jsonl (always, written first) and the trackers of ``config.report_to``; only on the main
    process (``enabled``). A tracker that raises is reported once and dropped; the file goes on."""

    def __init__(self, out: Path, enabled: bool, config: TrainConfig, resumed: bool = False):
        self.enabled = enabled
        self.file = (out / "metrics.jsonl").open("a", encoding="utf-8") if enabled else None
        names = resolve_report_to(config.report_to, config.tensorboard) if enabled else []
        self.trackers = start_trackers(names, config.to_dict(), out, resumed) if names else []

    def log(self, step: int, values: dict[str, Any], prefix: str = "train") -> None:
        """Append ``{"step", "kind": prefix, "time", **values}`` to metrics.jsonl and send the numbers to each
        tracker (main process only)."""
        if not self.enabled:
            return
        self._write(step, values, prefix)
        numbers = scalars(values)
        self._each("log", lambda tracker: tracker.log(step, numbers, prefix))

    def test_results(self, step: int, test: dict) -> None:
        """The final test results: a ``test`` record (avg_sts) in the file; summary scores and a table of
        the tasks in each tracker."""
        if not self.enabled:
            return
        self._write(step, {"avg_sts": test["avg"].get("sts", float("nan"))}, "test")
        scores, table = final_results(test)
        self._each("summary", lambda tracker: tracker.summary(step, scores, table))

    def close(self, failed: bool = False) -> None:
        """Close the file and finish the trackers (``failed``: the run stopped on an error)."""
        if self.file:
            self.file.close()
            self.file = None
        self._each("finish", lambda tracker: tracker.finish(failed))
        self.trackers = []

    def _write(self, step: int, values: dict[str, Any], prefix: str) -> None:
        record = {"step": step, "kind": prefix, "time": round(time.time(), 3), **values}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def _each(self, stage: str, call: Callable[[Tracker], None]) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as e:
                self.trackers.remove(tracker)
                warn_dropped(tracker.name, stage, e)
                if stage != "finish":  # release what it holds (a writer, a thread), if it can
                    with contextlib.suppress(Exception):
                        tracker.finish(failed=True)


class LogWindow:
    """Loss and throughput since the last log record. The loss is summed on the device, so that a step
    needs no host sync until the window is logged."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start a new window now."""
        self.rows, self.steps, self.start = 0, 0, time.perf_counter()
        self.loss: torch.Tensor | float = 0.0

    def add(self, rows: int, loss: torch.Tensor) -> None:
        """Add one step of ``rows`` rows and its ``loss`` (kept on the device)."""
        self.rows += rows
        self.loss = self.loss + loss.detach()
        self.steps += 1

    def averages(self) -> dict[str, float]:
        """Mean loss and sentences per second over the window; then the window starts again."""
        elapsed = time.perf_counter() - self.start
        values = {"loss": float(self.loss) / self.steps, "sentences_per_s": self.rows / max(elapsed, 1e-9)}
        self.reset()
        return values


def format_scores(scores: dict[str, float] | None) -> str:
    """Dev scores in one line (``STS-B 81.20, SICK-R 72.10``), ``-`` for none."""
    if not scores:
        return "-"
    names = {"stsb_spearman": "STS-B", "sickr_spearman": "SICK-R", "avg_sts": "avg", "dev_spearman": "dev"}
    return ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in scores.items())


def describe_run(
    config: TrainConfig, data: TrainingData, views: int, total_steps: int, env: Any, encoder: Any
) -> None:
    """The run's first lines on stderr: data, model, steps, devices, precision."""
    objective = "unsup" if data.columns == 1 else f"sup ({data.columns} columns)"
    blank = f", {data.skipped_blank} blank lines skipped" if data.skipped_blank else ""
    print(
        f"simcse: {objective} on {len(data):,} rows from {data.path}{blank}\n"
        f"simcse: model {encoder.source}, pooler {config.pooler}"
        f"{' (MLP in training only)' if config.mlp_only_train else ''}, packed={encoder.packed}\n"
        f"simcse: {total_steps} steps of {config.batch_size} rows x {views} views on {env.dist.world_size} x "
        f"{env.device} in {env.precision}"
        + (f" ({env.precision_reason})" if getattr(env, "precision_reason", "") else "")
        + (f", GradCache chunks of {config.gradcache_chunk_size}" if config.gradcache_chunk_size else ""),
        file=sys.stderr,
    )
    from simcse.training import methods

    for line in filter(None, (m.describe(config) for m in methods.enabled(config))):
        print(f"simcse: {line}", file=sys.stderr)
