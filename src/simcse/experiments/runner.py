"""Run a grid's cells: each one a ``simcse train`` process of its own, one after another or K at a time
(one GPU each when there are GPUs), locally or through submitit (Slurm, or its local executor).

Re-running a grid skips the cells that finished, resumes an interrupted cell from its newest checkpoint and
refuses a cell directory trained with other settings (nothing is overwritten that the grid did not write).
A failed cell does not stop the others; its log is named at the end.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simcse.core.errors import ConfigError, SimCSEError
from simcse.core.files import write_text_atomic
from simcse.experiments.grid import Cell, Grid, slug
from simcse.training.config import TrainConfig
from simcse.training.run_dir import RUN_CONFIG, finished_step, latest_checkpoint

LAUNCHERS = ("local", "submitit")
# keys whose difference does not make another run (where it is written, not what is trained)
_IRRELEVANT = {
    "output_dir",
    "overwrite_output_dir",
    "progress_bar",
    "num_threads",
    "report_to",
    "tensorboard",
}


@dataclass
class CellResult:
    """One cell's outcome: ``status`` done, skipped (already finished) or failed, its time, its metrics and
    its error."""

    setting: str
    seed: int
    out: str
    status: str  # done | skipped | failed
    seconds: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def cell_metrics(out: Path) -> dict[str, float]:
    """What a finished cell scored: its best dev scores, and the test averages and tasks when it was
    tested (``test_avg_sts``, ``test_STS12`` ...)."""
    meta = json.loads((out / "simcse.json").read_text(encoding="utf-8"))
    metrics = {k: float(v) for k, v in (meta.get("dev") or {}).items() if isinstance(v, (int, float))}
    test = meta.get("test") or {}
    for key, value in (test.get("avg") or {}).items():
        if isinstance(value, (int, float)):
            metrics[f"test_avg_{key}"] = float(value)
    for task, scores in (test.get("tasks") or {}).items():
        value = scores.get("spearman", scores.get("acc")) if isinstance(scores, dict) else None
        if isinstance(value, (int, float)):
            metrics[f"test_{task}"] = float(value)
    return {**metrics, **cell_timing(out)}


def cell_timing(out: Path) -> dict[str, float]:
    """From the cell's metrics.jsonl: ``wall_s``, the seconds from its first record to its last (training and
    the dev and test evaluations), and ``train_s_per_1000_steps``, the training time of 1,000 steps at the
    median logged throughput (windows that held a dev evaluation are outliers the median ignores)."""
    import statistics

    path = out / "metrics.jsonl"
    config = out / RUN_CONFIG
    if not path.is_file() or not config.is_file():
        return {}
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    times = [r["time"] for r in records if isinstance(r.get("time"), (int, float))]
    rates = [r["sentences_per_s"] for r in records if isinstance(r.get("sentences_per_s"), (int, float))]
    batch = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("batch_size")
    timing = {}
    if len(times) >= 2:
        timing["wall_s"] = float(max(times) - min(times))
    if rates and isinstance(batch, int) and statistics.median(rates) > 0:
        timing["train_s_per_1000_steps"] = 1000.0 * batch / statistics.median(rates)
    return timing


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    return [
        f"{k}={saved.get(k)!r} (grid: {wanted.get(k)!r})"
        for k in sorted(set(saved) | set(wanted))
        if k not in _IRRELEVANT and saved.get(k) != wanted.get(k)
    ]


def plan(cells: list[Cell]) -> dict[str, list[Cell]]:
    """Each cell as ``done`` (finished with these settings), ``resume`` (a checkpoint to continue from) or
    ``fresh``; a cell directory that holds another run, or something else, is refused (all at once)."""
    states: dict[str, list[Cell]] = {"done": [], "resume": [], "fresh": []}
    problems = []
    for cell in cells:
        saved_path = cell.out / RUN_CONFIG
        if not cell.out.exists() or not any(cell.out.iterdir()):
            states["fresh"].append(cell)
            continue
        if not saved_path.is_file():
            problems.append(
                f"{cell.out}: not a simcse run and not empty; remove it or choose another --output"
            )
            continue
        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
        # an option the saved run's simcse did not have yet ran at its default
        saved = {**TrainConfig().to_dict(), **saved}
        diff = _differences(saved, cell.config.to_dict())
        if diff:
            problems.append(
                f"{cell.out} was trained with other settings: {', '.join(diff[:4])}"
                f"{' ...' if len(diff) > 4 else ''}; remove it or choose another --output"
            )
        elif finished_step(cell.out, cell.config) is not None:
            states["done"].append(cell)
        elif latest_checkpoint(cell.out, 1) is not None:
            states["resume"].append(cell)
        else:
            states["fresh"].append(cell)
    if problems:
        raise ConfigError("; ".join(problems))
    return states


def _write_cell_config(cell: Cell, root: Path, fresh: bool) -> Path:
    config = cell.config.to_dict()
    config["overwrite_output_dir"] = (
        fresh  # a fresh cell may replace its own interrupted, checkpoint-less run
    )
    config["progress_bar"] = False
    path = root / ".cells" / slug(cell.setting.name) / f"seed{cell.seed}.yaml"
    return write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))


def cell_command(config_path: Path, resume: bool) -> list[str]:
    """The command of one cell: ``python -m simcse.cli train CONFIG`` (with ``--resume`` to continue it)."""
    return [sys.executable, "-m", "simcse.cli", "train", str(config_path), *(["--resume"] if resume else [])]


def run_command(command: list[str], log: str, env: dict[str, str] | None = None) -> int:
    """One cell's process, its output in ``log``; its exit status. ``env`` None: this process's environment
    (on a Slurm node: what Slurm set). (Module level: submitit pickles it.)"""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        return subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch CUDA runtime: CPU cells
        return 0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class _Progress:
    """A line per cell and the grid's ETA from the mean time of the cells run so far."""

    def __init__(self, total: int, already: int, parallel: int, echo: Callable[[str], None]):
        self.total, self.finished, self.parallel, self.echo = total, already, parallel, echo
        self.times: list[float] = []
        self.lock = threading.Lock()

    def report(self, result: CellResult, metric: str) -> None:
        with self.lock:
            self.finished += 1
            if result.seconds is not None:
                self.times.append(result.seconds)
            left = self.total - self.finished
            mean = sum(self.times) / len(self.times) if self.times else 0.0
            eta = f", ETA {_duration(mean * left / self.parallel)}" if left and self.times else ""
            if result.status == "failed":
                what = f"FAILED ({result.error})"
            else:
                value = result.metrics.get(metric)
                what = f"{metric} {value:.2f}" if value is not None else "done"
            took = f" in {_duration(result.seconds)}" if result.seconds is not None else ""
            self.echo(
                f"[{self.finished}/{self.total}] {result.setting} seed {result.seed}: {what}{took}; "
                f"{left} left{eta}"
            )


def run_cells(
    grid: Grid,
    cells: list[Cell],
    out: Path,
    *,
    parallel: int = 1,
    launcher: str = "local",
    launcher_options: dict[str, Any] | None = None,
    echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> list[CellResult]:
    """Run what is not done; results of every cell in grid order."""
    if parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {parallel}")
    if launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher {launcher!r}; choose one of {', '.join(LAUNCHERS)}")
    states = plan(cells)
    todo = [(c, False) for c in states["fresh"]] + [(c, True) for c in states["resume"]]
    progress = _Progress(len(cells), len(states["done"]), parallel, echo)
    if states["done"]:
        echo(f"simcse: {len(states['done'])} of {len(cells)} cells finished earlier; skipped")
    if states["resume"]:
        echo(f"simcse: {len(states['resume'])} interrupted cells resume from their checkpoints")
    results: dict[tuple[str, int], CellResult] = {}
    for cell in states["done"]:
        results[(cell.setting.name, cell.seed)] = CellResult(
            cell.setting.name, cell.seed, str(cell.out), "skipped", metrics=cell_metrics(cell.out)
        )
    jobs = []
    for cell, resume in todo:
        config_path = _write_cell_config(cell, out, fresh=not resume)
        log = out / "logs" / f"{slug(cell.setting.name)}-seed{cell.seed}.log"
        jobs.append((cell, cell_command(config_path, resume), str(log)))
    if launcher == "submitit":
        finished = _run_submitit(jobs, out, parallel, launcher_options or {})
    else:
        finished = _run_local(jobs, parallel)
    for cell, log, code, seconds in finished():
        result = _result(cell, log, code, seconds)
        progress.report(result, grid.metric)
        results[(cell.setting.name, cell.seed)] = result
    return [results[(c.setting.name, c.seed)] for c in cells]


def _result(cell: Cell, log: str, code: int, seconds: float) -> CellResult:
    if code == 0:
        try:
            return CellResult(
                cell.setting.name, cell.seed, str(cell.out), "done", seconds, cell_metrics(cell.out)
            )
        except (OSError, ValueError) as e:
            return CellResult(
                cell.setting.name, cell.seed, str(cell.out), "failed", seconds, error=f"{e}; see {log}"
            )
    return CellResult(
        cell.setting.name, cell.seed, str(cell.out), "failed", seconds, error=f"exit status {code}; see {log}"
    )


def _cell_env(slot: int, gpus: int, parallel: int) -> dict[str, str]:
    env = dict(os.environ)
    if gpus:  # one of the GPUs this process was given (device_count() counts only the visible ones)
        visible = [d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[slot % len(visible)] if visible else str(slot % gpus)
    elif (
        parallel > 1 and "OMP_NUM_THREADS" not in env
    ):  # K CPU cells share the cores instead of each taking all
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))
    return env


def _run_local(jobs: list[tuple[Cell, list[str], str]], parallel: int):
    gpus = _gpu_count()
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(parallel):
        slots.put(slot)

    def one(job: tuple[Cell, list[str], str]) -> tuple[Cell, str, int, float]:
        cell, command, log = job
        slot = slots.get()
        try:
            start = time.perf_counter()
            code = run_command(command, log, _cell_env(slot, gpus, parallel))
            return cell, log, code, time.perf_counter() - start
        finally:
            slots.put(slot)

    def finished() -> Iterator[tuple[Cell, str, int, float]]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = [pool.submit(one, job) for job in jobs]
            for future in concurrent.futures.as_completed(futures):
                yield future.result()

    return finished


def _run_submitit(jobs: list[tuple[Cell, list[str], str]], out: Path, parallel: int, options: dict[str, Any]):
    try:
        import submitit
    except ImportError:
        raise SimCSEError("--launcher submitit needs the submitit package: pip install submitit") from None
    options = dict(options)
    cluster = options.pop("cluster", None)  # slurm (default where sbatch exists), local, debug
    executor = submitit.AutoExecutor(folder=str(out / "submitit"), cluster=cluster)
    parameters = {"timeout_min": 24 * 60, **options}
    if cluster != "debug":
        parameters.setdefault("slurm_array_parallelism", parallel)
    try:
        executor.update_parameters(**parameters)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"submitit options {options}: {e}") from None

    def finished() -> Iterator[tuple[Cell, str, int, float]]:
        try:
            with executor.batch():  # one job array: slurm_array_parallelism caps how many run at once
                submitted = [
                    (cell, log, executor.submit(run_command, command, log)) for cell, command, log in jobs
                ]
        except Exception as e:  # sbatch refused (partition, account ...): nothing was submitted
            raise SimCSEError(
                f"submitit could not submit the cells: {str(e).strip().splitlines()[0]}"
            ) from None
        start = time.perf_counter()
        started = [(cell, log, job, start) for cell, log, job in submitted]
        for cell, log, job, start in started:
            try:
                code = job.result()
            except Exception as e:  # the job itself failed (scheduler, node): the cell failed
                code = 1
                Path(log).parent.mkdir(parents=True, exist_ok=True)
                with open(log, "a", encoding="utf-8") as handle:
                    handle.write(f"submitit job {job.job_id} failed: {e}\n")
            yield cell, log, code, time.perf_counter() - start

    return finished
