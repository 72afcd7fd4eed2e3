"""Experiment trackers: where a run's numbers go besides ``metrics.jsonl`` (option ``report_to``).

Why this module exists: TensorBoard, Weights & Biases, MLflow and Trackio all want the same things from a
run (its config, the step metrics, the final test results, an end) but each spells them its own way, and
each is an optional package. One small class per tracker behind one interface keeps those differences
here; :class:`simcse.training.metrics.MetricsLog` fans out to the chosen trackers and knows none of them.

The interface (:class:`Tracker`): ``start(config, run_dir, identity)``, ``log(step, values, prefix)`` (the
``train`` records: loss, lr, sentences_per_s, epoch [, mlm_loss]; the ``eval`` records: dev scores),
``summary(step, scores, table)`` (the final test results) and ``finish(failed)``.

Rules:

- a tracker's package is imported when the tracker starts, never before; ``TrainConfig.validate`` only
  checks that it is installed (:func:`missing_package`), so a missing one fails before anything is written;
- only the main process tracks (MetricsLog is main-only), and ``metrics.jsonl`` is written before any
  tracker is called: a tracker that raises (at start, log, summary or finish) prints one warning and is
  dropped; the run goes on;
- resume: the run's name and each tracker's run id are kept in ``OUTPUT/trackers.json``. A run resumed
  from a checkpoint appends to the same tracker runs: wandb (the stored id, ``resume="allow"``), MLflow
  (``start_run(run_id=...)``), Trackio (the stored name, ``resume="allow"``), TensorBoard (the same
  directory, a new event file). Steps between the checkpoint and the interruption are logged again (wandb
  drops steps lower than its last one, with a warning). A fresh start gets a new name and new runs.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simcse.core.errors import shorten
from simcse.core.files import write_text_atomic
from simcse.training.config import TRACKERS
from simcse.training.config.tracker_packages import REQUIREMENTS, installed, missing_package  # noqa: F401 (re-exported)

TRACKERS_FILE = "trackers.json"  # in the output directory: the run's name and its tracker run ids
DEFAULT_PROJECT = "simcse"
TEST_METRICS = ("spearman", "pearson", "acc", "f1", "align", "uniform")


def resolve_report_to(report_to: list[str], tensorboard: bool) -> list[str]:
    """The trackers a run uses: ``report_to`` with ``auto`` as TensorBoard when the option ``tensorboard``
    is true and its package is installed; ``none`` (or an empty list) is none."""
    names: list[str] = []
    for name in report_to:
        if name == "auto":
            name = "tensorboard" if tensorboard and installed("tensorboard") else "none"
        if name in TRACKERS and name not in names:
            names.append(name)
    return names


@dataclass
class RunIdentity:
    """What names the run in every tracker, kept in ``OUTPUT/trackers.json`` so that a resumed run finds
    its tracker runs again. ``ids``: tracker name -> that tracker's run id (filled by the trackers)."""

    name: str
    resumed: bool = False
    ids: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, out: Path, resumed: bool) -> RunIdentity:
        """The stored identity when resuming (and it is readable), else a new one named after the output
        directory and the time."""
        if resumed:
            try:
                saved = json.loads((out / TRACKERS_FILE).read_text(encoding="utf-8"))
                if isinstance(saved.get("name"), str) and isinstance(saved.get("ids"), dict):
                    ids = {str(k): str(v) for k, v in saved["ids"].items()}
                    return cls(saved["name"], True, ids)
            except (OSError, ValueError, AttributeError):
                pass
        path = out.resolve()
        # an experiment's cell (OUT/SETTING/seedN): the setting names the run too
        stem = f"{path.parent.name}-{path.name}" if re.fullmatch(r"seed\d+", path.name) else path.name
        return cls(f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")

    def save(self, out: Path) -> None:
        """Write the run's name and the trackers' run ids to ``out``'s trackers file (atomically, recorded in
        the run's manifest), so that a resumed run continues the same tracker runs."""
        from simcse.training.run_dir import record_written  # imports torch; config.validate imports this

        record_written(out, [TRACKERS_FILE])
        write_text_atomic(
            out / TRACKERS_FILE, json.dumps({"name": self.name, "ids": self.ids}, indent=2) + "\n"
        )


class Tracker:
    """One tracker. Every method may raise: MetricsLog then warns once and drops the tracker."""

    name = ""
    writes: tuple[str, ...] = ()  # the names it may create in the output directory (for the manifest)

    def start(self, config: dict[str, Any], run_dir: Path, identity: RunIdentity) -> None:
        """Open (or, resuming, reopen) the tracker's run and record the config (hyper-parameters)."""
        raise NotImplementedError

    def log(self, step: int, values: dict[str, float], prefix: str) -> None:
        """Scalars at ``step``, named ``prefix/key`` (``train/loss``, ``eval/stsb_spearman``)."""
        raise NotImplementedError

    def summary(self, step: int, scores: dict[str, float], table: list[dict[str, Any]]) -> None:
        """The final test results: ``scores`` as ``test/key`` summary values, ``table`` (one row per task)."""
        raise NotImplementedError

    def finish(self, failed: bool = False) -> None:
        """Close the tracker's run (``failed``: the run stopped on an error)."""
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """TensorBoard event files in ``OUTPUT/tensorboard``."""

    name, writes = "tensorboard", ("tensorboard",)

    def start(self, config: dict[str, Any], run_dir: Path, identity: RunIdentity) -> None:
        """Open a SummaryWriter in ``run_dir/tensorboard`` and record the config as text."""
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        self.writer.add_text("config", _indented(json.dumps(config, indent=2, default=str)))

    def log(self, step: int, values: dict[str, float], prefix: str) -> None:
        """One scalar per value, named ``prefix/key``."""
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def summary(self, step: int, scores: dict[str, float], table: list[dict[str, Any]]) -> None:
        """The scores as ``test/key`` scalars and the table as markdown text."""
        self.log(step, scores, "test")
        self.writer.add_text("test/results", markdown_table(table), step)

    def finish(self, failed: bool = False) -> None:
        """Close the writer."""
        self.writer.close()


class WandbTracker(Tracker):
    """Project ``$WANDB_PROJECT`` (default simcse); ``WANDB_MODE`` (offline, disabled) is wandb's own. Its
    local files go to ``OUTPUT/wandb``."""

    name, writes = "wandb", ("wandb",)

    def start(self, config: dict[str, Any], run_dir: Path, identity: RunIdentity) -> None:
        """Start (or, resuming, continue) the wandb run, saving its id in ``identity``."""
        import wandb

        self.wandb = wandb
        run_id = identity.ids.get(self.name) if identity.resumed else None
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            name=identity.name,
            id=run_id,
            resume="allow" if run_id else None,
            config=config,
            dir=str(run_dir),
        )
        identity.ids[self.name] = self.run.id

    def log(self, step: int, values: dict[str, float], prefix: str) -> None:
        """Log the values as ``prefix/key`` at ``step``."""
        self.run.log({f"{prefix}/{k}": v for k, v in values.items()}, step=step)

    def summary(self, step: int, scores: dict[str, float], table: list[dict[str, Any]]) -> None:
        """The scores into the run's summary and the table as a ``test/results`` wandb Table."""
        self.run.summary.update({f"test/{k}": v for k, v in scores.items()})
        columns, rows = columns_and_rows(table)
        self.run.log({"test/results": self.wandb.Table(columns=columns, data=rows)}, step=step)

    def finish(self, failed: bool = False) -> None:
        """Finish the run, with exit code 1 when it failed."""
        self.run.finish(exit_code=1 if failed else 0)


class MLflowTracker(Tracker):
    """``$MLFLOW_TRACKING_URI`` when set; else a SQLite store in ``OUTPUT/mlruns`` (``mlflow ui
    --backend-store-uri sqlite:///OUTPUT/mlruns/mlflow.db``), so that nothing lands in the working
    directory. Experiment ``$MLFLOW_EXPERIMENT_NAME`` (default simcse). The config is flattened into
    params (MLflow refuses some characters in names and values over 6000 characters); params cannot
    change, so a resumed run logs only the ones it lacks."""

    name, writes = "mlflow", ("mlruns",)

    def start(self, config: dict[str, Any], run_dir: Path, identity: RunIdentity) -> None:
        """Start (or, resuming, continue) the MLflow run in its experiment, and log the config's params it
        lacks."""
        import mlflow

        self.mlflow = mlflow
        uri, artifacts = os.environ.get("MLFLOW_TRACKING_URI"), None
        if not uri:
            store = (run_dir / "mlruns").resolve()
            store.mkdir(exist_ok=True)
            uri, artifacts = f"sqlite:///{store / 'mlflow.db'}", (store / "artifacts").as_uri()
        mlflow.set_tracking_uri(uri)  # also when set: an earlier run in this process may have set another
        experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT
        experiment = mlflow.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else mlflow.create_experiment(experiment_name, artifact_location=artifacts)
        )
        run_id = identity.ids.get(self.name) if identity.resumed else None
        run = mlflow.start_run(
            run_id=run_id,
            experiment_id=experiment_id,
            run_name=identity.name,
            nested=mlflow.active_run() is not None,
        )
        identity.ids[self.name] = run.info.run_id
        params = mlflow_params(config)
        if run_id is not None:
            params = {k: v for k, v in params.items() if k not in run.data.params}
        if params:
            mlflow.log_params(params)

    def log(self, step: int, values: dict[str, float], prefix: str) -> None:
        """Log the values as ``prefix/key`` metrics at ``step``."""
        self.mlflow.log_metrics({f"{prefix}/{k}": v for k, v in values.items()}, step=step)

    def summary(self, step: int, scores: dict[str, float], table: list[dict[str, Any]]) -> None:
        """The scores as ``test/key`` metrics and the table as the artifact ``test_results.json``."""
        self.log(step, scores, "test")
        columns, rows = columns_and_rows(table)
        self.mlflow.log_dict({"columns": columns, "data": rows}, "test_results.json")

    def finish(self, failed: bool = False) -> None:
        """End the run as FINISHED, or FAILED."""
        self.mlflow.end_run(status="FAILED" if failed else "FINISHED")


class TrackioTracker(Tracker):
    """Local-first: the runs go to trackio's directory (``$TRACKIO_DIR``, default ``$HF_HOME/trackio``;
    ``trackio show`` opens the dashboard), project ``$TRACKIO_PROJECT`` (default simcse)."""

    name = "trackio"

    def start(self, config: dict[str, Any], run_dir: Path, identity: RunIdentity) -> None:
        """Start (or, resuming, continue) the trackio run of the run's name."""
        import trackio

        self.trackio = trackio
        trackio.init(
            project=os.environ.get("TRACKIO_PROJECT") or DEFAULT_PROJECT,
            name=identity.name,
            config=config,
            resume="allow" if identity.resumed else "never",
        )
        identity.ids[self.name] = identity.name

    def log(self, step: int, values: dict[str, float], prefix: str) -> None:
        """Log the values as ``prefix/key`` at ``step``."""
        self.trackio.log({f"{prefix}/{k}": v for k, v in values.items()}, step=step)

    def summary(self, step: int, scores: dict[str, float], table: list[dict[str, Any]]) -> None:
        """The scores as ``test/key`` values and the table as a ``test/results`` trackio Table."""
        columns, rows = columns_and_rows(table)
        results = self.trackio.Table(columns=columns, data=rows)
        self.trackio.log({**{f"test/{k}": v for k, v in scores.items()}, "test/results": results}, step=step)

    def finish(self, failed: bool = False) -> None:
        """Finish the run (trackio records no failure)."""
        self.trackio.finish()


CLASSES: dict[str, type[Tracker]] = {
    cls.name: cls for cls in (TensorBoardTracker, WandbTracker, MLflowTracker, TrackioTracker)
}  # the same names, in the same order, as config.TRACKERS and REQUIREMENTS


def start_trackers(names: list[str], config: dict[str, Any], out: Path, resumed: bool) -> list[Tracker]:
    """The started trackers among ``names``; one that fails to start is reported (:func:`warn_dropped`)
    and left out. The run's identity is saved when a tracker has a run to find again."""
    from simcse.training.run_dir import record_written

    identity = RunIdentity.load(out, resumed)
    started = []
    for name in names:
        tracker = CLASSES[name]()
        record_written(out, tracker.writes)
        try:
            tracker.start(config, out, identity)
        except Exception as e:
            warn_dropped(name, "start", e)
            continue
        started.append(tracker)
    if identity.ids:
        identity.save(out)
    return started


def warn_dropped(name: str, stage: str, error: BaseException) -> None:
    """Warn on stderr that tracker ``name`` failed at ``stage`` and is dropped for the rest of the run."""
    print(
        f"simcse: warning: report_to {name} failed at {stage} ({type(error).__name__}: "
        f"{shorten(str(error), 200)}); it is dropped for the rest of the run (metrics.jsonl has every "
        "record)",
        file=sys.stderr,
    )


def scalars(values: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a record (what trackers plot)."""
    return {k: v for k, v in values.items() if _finite(v)}


def final_results(test: dict) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The final test results (``simcse.evaluation.suite.evaluate``'s) as summary scores (``STS12_spearman``
    ..., ``avg_sts``) and a table (one row per task: task and its metrics)."""
    scores: dict[str, float] = {}
    table: list[dict[str, Any]] = []
    for task, entry in test.get("tasks", {}).items():
        metrics = {m: entry[m] for m in TEST_METRICS if _finite(entry.get(m))}
        scores.update({f"{task}_{m}": v for m, v in metrics.items()})
        table.append({"task": task, **metrics})
    scores.update({f"avg_{k}": v for k, v in test.get("avg", {}).items() if _finite(v)})
    return scores, table


def columns_and_rows(table: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The table's columns (every key, in order of appearance) and its rows as lists (None: no value)."""
    columns = list(dict.fromkeys(key for row in table for key in row))
    return columns, [[row.get(c) for c in columns] for row in table]


def markdown_table(table: list[dict[str, Any]]) -> str:
    """The table (:func:`columns_and_rows`) as markdown, floats with two decimals and ``-`` for a missing
    value."""
    columns, rows = columns_and_rows(table)
    cells = [
        [f"{v:.2f}" if isinstance(v, float) else "-" if v is None else str(v) for v in row] for row in rows
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def mlflow_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The config as MLflow params: nested mappings flattened (``extra.note``), names reduced to the
    characters MLflow accepts, values as strings of at most 6000 characters."""
    params: dict[str, str] = {}
    for key, value in config.items():
        name = (prefix + re.sub(r"[^\w.\- ]", "_", str(key)))[:250]
        if isinstance(value, dict) and value:
            params.update(mlflow_params(value, name + "."))
        else:
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            params[name] = text if len(text) <= 6000 else text[:5997] + "..."
    return params


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _indented(text: str) -> str:
    """Markdown code (TensorBoard's text plugin renders markdown)."""
    return "\n".join("    " + line for line in text.splitlines())
