"""How long a grid takes: the training steps of each cell from its config, and the grid's time at a step
time the user measured (``simcse experiment NAME --dry-run --step-time S``; on a GPU,
``benchmarks/gpu_bench.sh`` measures S). The paper's two training files are counted by their published
sizes, so a paper-scale grid is projected on a machine that does not have them."""

from __future__ import annotations

from simcse.core.errors import SimCSEError
from simcse.experiments.grid import Cell
from simcse.training.config import TrainConfig

PAPER_ROWS = {"wiki1m": 1_000_000, "nli": 275_601}  # wiki1m_for_simcse.txt, nli_for_simcse.csv


def cell_steps(config: TrainConfig) -> int | None:
    """Optimiser steps of one run (one process: the trainer's own batch plan), or None when its training
    file is not here."""
    if config.max_steps:
        return config.max_steps
    rows = PAPER_ROWS.get(config.train_file)
    if rows is None:
        from simcse.data.sentence_files import read_training_file
        from simcse.training.setup import resolve_train_file

        try:
            rows = len(read_training_file(resolve_train_file(config)))
        except SimCSEError:
            return None
    if config.max_train_samples:
        rows = min(rows, config.max_train_samples)
    from simcse.training.data import BatchPlan

    return config.num_epochs * BatchPlan(rows, config.batch_size, config.seed).steps_per_epoch


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def projection_lines(cells: list[Cell], step_time: float) -> list[str]:
    """One line per setting (its steps per cell) and the grid's total, at ``step_time`` seconds a step
    (training only: add the dev evaluations, a few seconds each on a GPU)."""
    lines, total, unknown = [], 0, []
    by_setting: dict[str, list[int | None]] = {}
    for cell in cells:
        by_setting.setdefault(cell.setting.name, []).append(cell_steps(cell.config))
    for name, steps in by_setting.items():
        known = [s for s in steps if s is not None]
        if len(known) < len(steps):
            unknown.append(name)
        total += sum(known)
        each = f"{known[0]:,} steps" if known else "steps unknown (its training file is not here)"
        lines.append(f"{name}: {len(steps)} cell(s) x {each}")
    note = f" (not counted: {', '.join(unknown)})" if unknown else ""
    lines.append(
        f"total: {total:,} steps, about {_hours(total * step_time)} at {step_time:g} s/step on one "
        f"device, one cell at a time{note}"
    )
    return lines
