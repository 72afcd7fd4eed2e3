"""What a run reports: ``metrics.jsonl`` and TensorBoard, the logging window's averages, and the lines
it prints to the terminal."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from simcse.config import TrainConfig
from simcse.sentence_files import TrainingData


class MetricsLog:
    """metrics.jsonl (always) and TensorBoard (when installed and enabled); only on the main process."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self.file = (out / "metrics.jsonl").open("a", encoding="utf-8") if enabled else None
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                self.tb = None

    def log(self, step: int, values: dict[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": step, "kind": prefix, "time": round(time.time(), 3), **values}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None


class LogWindow:
    """Loss and throughput since the last log record. The loss is summed on the device, so that a step
    needs no host sync until the window is logged."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.rows, self.steps, self.start = 0, 0, time.perf_counter()
        self.loss: torch.Tensor | float = 0.0

    def add(self, rows: int, loss: torch.Tensor) -> None:
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
        + (f", GradCache chunks of {config.gradcache_chunk_size}" if config.gradcache_chunk_size else ""),
        file=sys.stderr,
    )
