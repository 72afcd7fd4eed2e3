"""``report_to``: the option, its up-front checks, and what each tracker receives from a real (tiny) run.

wandb is replaced by a fake module that records its calls (its signatures are wandb's); MLflow and Trackio
run for real, on stores inside the test's directory, and what they stored is read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from simcse.core.errors import ConfigError
from simcse.training import trackers
from simcse.training.config import TRACKERS, TrainConfig, parse_flags
from simcse.training.loop import TrainingError, train
from simcse.training.metrics import MetricsLog
from tests.helpers import QUIET, SENTENCES, assert_one_line_error, run, train_config

ROOT = Path(__file__).resolve().parents[2]
TEST_RESULTS = {"model": "run", "name": "run", "mode": "test", "aggregate": "all", "avg": {"sts": 61.5},
                "tasks": {"STS12": {"spearman": 61.5, "pearson": 60.25, "n": 3, "split": "test"},
                          "MR": {"acc": 70.0, "classifier": "senteval"}}}  # fmt: skip


@pytest.fixture
def txt(tmp_path) -> Path:
    path = tmp_path / "train.txt"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def dev(tmp_path) -> Path:
    """A dev file of ten scored pairs: dev evaluation (``eval/dev_spearman``) in milliseconds."""
    rows = [(SENTENCES[i], SENTENCES[(i * 3 + 1) % len(SENTENCES)], (i * 7) % 11 / 2) for i in range(10)]
    path = tmp_path / "dev.csv"
    path.write_text("sentence1,sentence2,score\n" + "\n".join(f'"{a}","{b}",{s}' for a, b, s in rows) + "\n",
                    encoding="utf-8")  # fmt: skip
    return path


def _crash_at_step_3(monkeypatch) -> Callable[[], None]:
    """The loss turns NaN at the third step, so that the run stops there keeping its checkpoint of step 2
    (with ``save_steps=2``); the returned function undoes it, for the resume."""
    from simcse.training import losses

    original, calls = losses.ContrastiveLoss.forward, {"n": 0}

    def nan_at_step_3(self, views):
        calls["n"] += 1
        return original(self, views) * (float("nan") if calls["n"] == 3 else 1.0)

    monkeypatch.setattr(losses.ContrastiveLoss, "forward", nan_at_step_3)
    return lambda: monkeypatch.setattr(losses.ContrastiveLoss, "forward", original)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------------------------- the option
def test_report_to_from_flags_and_yaml(tmp_path):
    assert TrainConfig().report_to == ["auto"]
    flags = TrainConfig().override(parse_flags(["--report_to", "tensorboard, WandB,tensorboard"]))
    assert flags.report_to == ["tensorboard", "wandb"]
    assert TrainConfig().override(parse_flags(["--report-to=none"])).report_to == ["none"]
    assert TrainConfig().override({"report_to": ""}).report_to == []
    for text in ("report_to: [mlflow, trackio]\n", "report_to: mlflow,trackio\n"):
        path = tmp_path / "recipe.yaml"
        path.write_text(text, encoding="utf-8")
        config = TrainConfig.from_yaml(path)
        assert config.report_to == ["mlflow", "trackio"]
        path.write_text(config.to_yaml(), encoding="utf-8")
        assert TrainConfig.from_yaml(path) == config
    with pytest.raises(ConfigError, match="report_to must be a list of tracker names"):
        TrainConfig().override({"report_to": [1, 2]})


def test_unknown_tracker_is_a_one_line_error_before_anything_is_written(tmp_path, capsys, tiny_bert, txt):
    out = tmp_path / "run"
    code, _, err = run(capsys, ["train", "--train_file", str(txt), "--model_name_or_path", str(tiny_bert),
                                "--output_dir", str(out), *QUIET, "--report_to", "wandb,tensorbored"])  # fmt: skip
    assert_one_line_error(code, err, "report_to", "'tensorbored'", "tensorboard, wandb, mlflow, trackio")
    assert not out.exists()


def test_a_tracker_not_installed_is_named_with_its_pip_command_among_the_other_problems(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # None in sys.modules: not importable
    config = TrainConfig(train_file="a.txt", batch_size=1, report_to=["wandb"])
    with pytest.raises(ConfigError) as info:
        config.validate()
    message = str(info.value)
    assert message.startswith("2 problems: ") and "\n" not in message
    assert "batch_size must be at least 2" in message
    assert "report_to wandb needs the wandb package: pip install wandb" in message


def test_mlflow_without_a_tracking_uri_needs_the_sqlite_store_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", types.ModuleType("mlflow"))
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match=r"OUTPUT/mlruns/mlflow.db.*pip install sqlalchemy alembic"):
        TrainConfig(train_file="a.txt", report_to=["mlflow"]).validate()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    TrainConfig(train_file="a.txt", report_to=["mlflow"]).validate()


@pytest.mark.parametrize(
    ("report_to", "tensorboard", "match"),
    [(["tensorboard"], False, "report_to names tensorboard but tensorboard is false"),
     (["none", "wandb"], True, "report_to none means no tracker"), ("wandb", True, "report_to must be a list")],
)  # fmt: skip
def test_contradictions_are_refused(report_to, tensorboard, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(train_file="a.txt", report_to=report_to, tensorboard=tensorboard).validate()


def test_auto_is_tensorboard_when_installed_and_the_tensorboard_option_is_true(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", types.ModuleType("tensorboard"))
    assert trackers.resolve_report_to(["auto"], tensorboard=True) == ["tensorboard"]
    assert trackers.resolve_report_to(["auto"], tensorboard=False) == []
    assert trackers.resolve_report_to(["auto", "wandb", "tensorboard"], tensorboard=True) == [
        "tensorboard",
        "wandb",
    ]
    assert (
        trackers.resolve_report_to(["none"], tensorboard=True)
        == trackers.resolve_report_to([], tensorboard=True)
        == []
    )
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert trackers.resolve_report_to(["auto"], tensorboard=True) == []
    TrainConfig(train_file="a.txt").validate()  # auto never asks for a package


def test_one_class_and_one_requirement_per_tracker():
    assert tuple(trackers.CLASSES) == tuple(trackers.REQUIREMENTS) == TRACKERS
    assert all(cls.name == name for name, cls in trackers.CLASSES.items())


def test_mlflow_params_are_flat_strings_with_names_mlflow_accepts():
    params = trackers.mlflow_params({"batch_size": 4, "report_to": ["mlflow", "wandb"], "data_dir": None,
                                     "extra": {"a b/c:d": "x" * 7000, "nested": {"k": 1}, "empty": {}}})  # fmt: skip
    assert params == {"batch_size": "4", "report_to": "mlflow,wandb", "data_dir": "None",
                      "extra.a b_c_d": "x" * 5997 + "...", "extra.nested.k": "1", "extra.empty": "{}"}  # fmt: skip


# ---------------------------------------------------------------------------------------------- wandb (fake)
class FakeWandb(types.ModuleType):
    """The part of wandb the tracker uses, with wandb's parameter names (a wrong keyword is a TypeError):
    ``init`` -> a run with ``id``, ``log``, ``summary``, ``finish``; ``Table``."""

    def __init__(self, fail_init: bool = False, fail_log_at: int | None = None):
        super().__init__("wandb")
        self.inits: list[dict] = []
        self.runs: list[FakeRun] = []
        self.fail_init, self.fail_log_at = fail_init, fail_log_at
        wandb = self

        class Table:
            def __init__(self, columns=None, data=None, rows=None, dataframe=None, dtype=None, optional=True,
                         allow_mixed_types=False, log_mode="IMMUTABLE"):  # fmt: skip
                self.columns, self.data = columns, data

        self.Table = Table

        class FakeRun:
            def __init__(self, run_id: str):
                self.id, self.logged, self.summary, self.finished = run_id, [], {}, []

            def log(self, data, step=None, commit=None):
                if len(self.logged) + 1 == wandb.fail_log_at:
                    raise RuntimeError("wandb: network is unreachable")
                self.logged.append((step, dict(data)))

            def finish(self, exit_code=None, quiet=None):
                self.finished.append(exit_code)

        self.FakeRun = FakeRun

    def init(self, entity=None, project=None, dir=None, id=None, name=None, notes=None, tags=None, config=None,
             config_exclude_keys=None, config_include_keys=None, allow_val_change=None, group=None, job_type=None,
             mode=None, force=None, reinit=None, resume=None, resume_from=None, fork_from=None, save_code=None,
             tensorboard=None, sync_tensorboard=None, monitor_gym=None, settings=None):  # fmt: skip
        if self.fail_init:
            raise RuntimeError("api_key not configured (no-tty)")
        self.inits.append({"project": project, "name": name, "id": id, "resume": resume, "config": config,
                           "dir": dir})  # fmt: skip
        self.runs.append(self.FakeRun(id or f"run{len(self.runs)}"))
        return self.runs[-1]


def test_wandb_gets_the_config_train_metrics_dev_scores_and_the_test_table(
    tmp_path, tiny_bert, txt, dev, monkeypatch
):
    from simcse.training import finish

    wandb = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    monkeypatch.setenv("WANDB_PROJECT", "my-project")
    monkeypatch.setattr(finish, "evaluate_on_test", lambda config, out: TEST_RESULTS)  # no STS data needed
    out = tmp_path / "run"
    train(train_config(tiny_bert, txt, out, report_to=["wandb"], dev_eval=True, dev_file=str(dev), eval_steps=2,
                       eval_before_training=False, final_eval="sts"))  # fmt: skip
    (init,) = wandb.inits
    assert init["project"] == "my-project" and init["dir"] == str(out) and init["resume"] is None
    assert init["name"].startswith("run-") and init["config"]["batch_size"] == 4
    assert init["config"]["report_to"] == ["wandb"]
    (wrun,) = wandb.runs
    train_logs = [(step, data) for step, data in wrun.logged if "train/loss" in data]
    assert [step for step, _ in train_logs] == [1, 2, 3, 4]
    assert set(train_logs[0][1]) == {"train/loss", "train/lr", "train/sentences_per_s", "train/epoch"}
    assert [step for step, data in wrun.logged if "eval/dev_spearman" in data] == [2, 4]
    assert wrun.summary == {"test/STS12_spearman": 61.5, "test/STS12_pearson": 60.25, "test/MR_acc": 70.0,
                            "test/avg_sts": 61.5}  # fmt: skip
    step, data = wrun.logged[-1]
    table = data["test/results"]
    assert step == 4 and table.columns == ["task", "spearman", "pearson", "acc"]
    assert table.data == [["STS12", 61.5, 60.25, None], ["MR", None, None, 70.0]]
    assert wrun.finished == [0]
    assert json.loads((out / "trackers.json").read_text()) == {"name": init["name"], "ids": {"wandb": "run0"}}
    assert _records(out)[-1]["kind"] == "test"  # metrics.jsonl as before
    assert "trackers.json" in json.loads((out / ".simcse-files").read_text())


def test_resume_appends_to_the_same_wandb_run(tmp_path, tiny_bert, txt, monkeypatch):
    wandb = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    undo = _crash_at_step_3(monkeypatch)
    out = tmp_path / "run"
    config = train_config(tiny_bert, txt, out, report_to=["wandb"], save_steps=2)
    with pytest.raises(TrainingError, match="at step 3"):
        train(config)
    undo()
    train(config, resume=True)
    first, second = wandb.inits
    assert (second["id"], second["resume"], second["name"]) == ("run0", "allow", first["name"])
    assert [r.finished for r in wandb.runs] == [[1], [0]]  # the crashed run is marked failed
    assert [s for s, d in wandb.runs[1].logged if "train/loss" in d] == [3, 4]
    # a fresh start (no checkpoint) is a new run with a new name
    train(train_config(tiny_bert, txt, out, report_to=["wandb"], overwrite_output_dir=True))
    assert wandb.inits[2]["id"] is None and wandb.inits[2]["resume"] is None


def test_a_tracker_that_fails_is_dropped_with_one_warning_and_metrics_jsonl_is_complete(
    tmp_path, tiny_bert, txt, monkeypatch, capsys
):
    wandb = FakeWandb(fail_log_at=2)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    out = tmp_path / "run"
    result = train(train_config(tiny_bert, txt, out, report_to=["wandb"]))
    assert result.global_step == 4
    assert [r["step"] for r in _records(out) if r["kind"] == "train"] == [1, 2, 3, 4]
    (wrun,) = wandb.runs
    assert [step for step, _ in wrun.logged] == [1] and wrun.finished == [1]  # released, not called again
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "simcse: warning: report_to wandb failed at log (RuntimeError: wandb: network is unreachable); it is "
        "dropped for the rest of the run (metrics.jsonl has every record)"
    ]


def test_a_tracker_that_cannot_start_is_dropped_and_training_goes_on(
    tmp_path, tiny_bert, txt, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "wandb", FakeWandb(fail_init=True))
    out = tmp_path / "run"
    assert train(train_config(tiny_bert, txt, out, report_to=["wandb"])).global_step == 4
    assert "report_to wandb failed at start (RuntimeError: api_key not configured" in capsys.readouterr().err
    assert len(_records(out)) == 4 and not (out / "trackers.json").exists()


# ---------------------------------------------------------------------------------------------- TensorBoard
def test_tensorboard_gets_the_config_and_the_test_results(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainConfig(train_file="a.txt", report_to=["tensorboard"], output_dir=str(tmp_path))
    log = MetricsLog(tmp_path, True, config)
    log.log(1, {"loss": 0.5, "lr": 1e-5, "note": "text"})
    log.test_results(1, TEST_RESULTS)
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "test/STS12_spearman", "test/avg_sts"} <= set(events.Tags()["scalars"])
    assert {"config/text_summary", "test/results/text_summary"} <= set(events.Tags()["tensors"])


# ---------------------------------------------------------------------------------------------- MLflow
def test_mlflow_stores_params_metrics_and_test_results_in_the_output_dir_and_resumes_the_same_run(
    tmp_path, tiny_bert, txt, dev, monkeypatch
):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    from simcse.training import finish

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setattr(finish, "evaluate_on_test", lambda config, out: TEST_RESULTS)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    undo = _crash_at_step_3(monkeypatch)
    out = tmp_path / "run"
    extra = {"note": "baseline", "long": "x" * 7000, "odd key/with:colon": 1}
    config = train_config(tiny_bert, txt, out, report_to=["mlflow"], save_steps=2, dev_eval=True, final_eval="sts",
                          dev_file=str(dev), eval_steps=2, eval_before_training=False, extra=extra)  # fmt: skip
    with pytest.raises(TrainingError, match="at step 3"):
        train(config)
    undo()
    config.logging_steps = 2  # resumable with another logging interval; the param keeps its first value
    train(config, resume=True)

    client = MlflowClient(f"sqlite:///{out / 'mlruns' / 'mlflow.db'}")
    run_id = json.loads((out / "trackers.json").read_text())["ids"]["mlflow"]
    mrun = client.get_run(run_id)
    assert mrun.info.status == "FINISHED" and mrun.info.run_name.startswith("run-")
    assert client.get_experiment(mrun.info.experiment_id).name == "simcse"
    assert len(client.search_runs([mrun.info.experiment_id])) == 1  # the resumed run is the same run
    params = mrun.data.params
    assert params["batch_size"] == "4" and params["report_to"] == "mlflow" and params["logging_steps"] == "1"
    assert params["extra.note"] == "baseline" and len(params["extra.long"]) == 6000
    assert params["extra.odd key_with_colon"] == "1"
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [1, 2, 4]
    assert set(mrun.data.metrics) >= {"train/lr", "train/sentences_per_s", "train/epoch"}
    assert [m.step for m in client.get_metric_history(run_id, "eval/dev_spearman")] == [2, 4]
    assert mrun.data.metrics["test/STS12_spearman"] == 61.5 and mrun.data.metrics["test/avg_sts"] == 61.5
    table = json.loads(
        Path(client.download_artifacts(run_id, "test_results.json", str(tmp_path))).read_text()
    )
    assert table == {"columns": ["task", "spearman", "pearson", "acc"],
                     "data": [["STS12", 61.5, 60.25, None], ["MR", None, None, 70.0]]}  # fmt: skip
    assert list(cwd.iterdir()) == []  # nothing in the working directory
    assert "mlruns" in json.loads((out / ".simcse-files").read_text())


class FakeMlflow(types.ModuleType):
    """The fluent MLflow API the tracker uses, with MLflow's parameter names; records the calls."""

    def __init__(self):
        super().__init__("mlflow")
        self.calls: list[tuple] = []

    def set_tracking_uri(self, uri):
        self.calls.append(("set_tracking_uri", uri))

    def get_experiment_by_name(self, name):
        return None

    def create_experiment(self, name, artifact_location=None, tags=None, trace_location=None):
        self.calls.append(("create_experiment", name, artifact_location))
        return "7"

    def active_run(self):
        return None

    def start_run(self, run_id=None, experiment_id=None, run_name=None, nested=False, parent_run_id=None,
                  tags=None, description=None, log_system_metrics=None):  # fmt: skip
        self.calls.append(("start_run", run_id, experiment_id, run_name, nested))
        info = types.SimpleNamespace(run_id=run_id or "abc123")
        return types.SimpleNamespace(info=info, data=types.SimpleNamespace(params={}))

    def log_params(self, params, synchronous=None, run_id=None):
        self.calls.append(("log_params", dict(params)))

    def log_metrics(self, metrics, step=None, synchronous=None, run_id=None, timestamp=None, model_id=None,
                    dataset=None):  # fmt: skip
        self.calls.append(("log_metrics", dict(metrics), step))

    def log_dict(self, dictionary, artifact_file, run_id=None):
        self.calls.append(("log_dict", artifact_file))

    def end_run(self, status="FINISHED"):
        self.calls.append(("end_run", status))


def test_mlflow_with_a_tracking_uri_uses_it_and_the_named_experiment(tmp_path, monkeypatch):
    mlflow = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "sts-sweep")
    config = TrainConfig(train_file="a.txt", report_to=["mlflow"], output_dir=str(tmp_path)).validate()
    log = MetricsLog(tmp_path, True, config)
    log.log(3, {"loss": 0.5, "lr": float("nan")})
    log.test_results(3, TEST_RESULTS)
    log.close()
    names = [call[0] for call in mlflow.calls]
    assert names == ["set_tracking_uri", "create_experiment", "start_run", "log_params", "log_metrics",
                     "log_metrics", "log_dict", "end_run"]  # fmt: skip
    assert mlflow.calls[0] == ("set_tracking_uri", "http://tracking.example:5000")
    assert mlflow.calls[1] == ("create_experiment", "sts-sweep", None)  # the server's artifact store
    assert mlflow.calls[2] == ("start_run", None, "7", json.loads((tmp_path / "trackers.json").read_text())["name"],
                               False)  # fmt: skip
    assert mlflow.calls[4] == ("log_metrics", {"train/loss": 0.5}, 3)  # NaN is left out
    assert mlflow.calls[-1] == ("end_run", "FINISHED") and not (tmp_path / "mlruns").exists()


# ---------------------------------------------------------------------------------------------- Trackio (real)
TRACKIO_CHILD = """
import json, sys
from pathlib import Path
from simcse.training.loop import train
from simcse.training.metrics import MetricsLog
from tests.helpers import train_config
model, txt, dev, out, results = sys.argv[1:6]
options = dict(report_to=["trackio"], save_steps=2, dev_eval=True, dev_file=dev, eval_steps=2,
               eval_before_training=False)
train(train_config(model, txt, out, max_steps=4, **options))
config = train_config(model, txt, out, max_steps=6, **options)
train(config, resume=True)  # from the checkpoint at step 2, to step 6
log = MetricsLog(Path(out), True, config, resumed=True)
log.test_results(6, json.loads(results))
log.close()
from trackio.sqlite_storage import SQLiteStorage
name = json.loads((Path(out) / "trackers.json").read_text())["name"]
print(json.dumps({"name": name, "runs": SQLiteStorage.get_runs("simcse"),
                  "logs": SQLiteStorage.get_logs("simcse", name),
                  "config": SQLiteStorage.get_run_config("simcse", name)}, default=str))
"""


def test_trackio_logs_a_run_locally_and_resume_appends_to_it(tmp_path, tiny_bert, txt, dev):
    """In a child process: trackio reads TRACKIO_DIR once, at import."""
    pytest.importorskip("trackio")
    out = tmp_path / "run"
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "OMP_NUM_THREADS": "1"}
    env.pop("TRACKIO_PROJECT", None)
    args = [sys.executable, "-c", TRACKIO_CHILD, str(tiny_bert), str(txt), str(dev), str(out),
            json.dumps(TEST_RESULTS)]  # fmt: skip
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stored = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stored["runs"] == [stored["name"]]  # one run: the resumed one appended to it
    assert stored["config"]["batch_size"] == 4 and stored["config"]["max_steps"] == 6
    logs = stored["logs"]
    assert [r["step"] for r in logs if "train/loss" in r] == [1, 2, 3, 4, 3, 4, 5, 6]
    assert all({"train/lr", "train/sentences_per_s"} <= set(r) for r in logs if "train/loss" in r)
    assert [r["step"] for r in logs if "eval/dev_spearman" in r] == [2, 4, 4, 6]
    (final,) = [r for r in logs if "test/avg_sts" in r]
    assert final["step"] == 6 and final["test/STS12_spearman"] == 61.5
    assert final["test/results"]["_value"] == [{"task": "STS12", "spearman": 61.5, "pearson": 60.25, "acc": None},
                                               {"task": "MR", "spearman": None, "pearson": None, "acc": 70.0}]  # fmt: skip
    assert (tmp_path / "trackio").is_dir() and not (out / "trackio").exists()
