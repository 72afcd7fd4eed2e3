"""The experiment runner on a tiny model: a grid's cells run as ``simcse train`` processes, their results
are aggregated over seeds, finished cells are skipped, interrupted ones resumed, changed ones refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from simcse.core.errors import ConfigError
from simcse.experiments import run_experiment
from simcse.experiments.grid import cells, load_grid, slug
from simcse.experiments.results import mean_std
from simcse.experiments.runner import plan
from tests.helpers import SENTENCES, assert_one_line_error, run


@pytest.fixture
def files(tmp_path) -> tuple[Path, Path]:
    train = tmp_path / "train.txt"
    train.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    dev = tmp_path / "dev.csv"
    rows = [(SENTENCES[i], SENTENCES[(i * 5 + 1) % len(SENTENCES)], (i * 7) % 11 / 2) for i in range(12)]
    dev.write_text("sentence1,sentence2,score\n" + "\n".join(f'"{a}","{b}",{s}' for a, b, s in rows) + "\n")
    return train, dev


def _grid(tmp_path, tiny_bert, files, **extra) -> Path:
    train, dev = files
    grid = {
        "name": "tiny",
        "title": "A tiny grid",
        "metric": "dev_spearman",
        "seeds": [1, 2],
        "base": {"model_name_or_path": str(tiny_bert), "train_file": str(train), "dev_file": str(dev),
                 "batch_size": 4, "max_seq_len": 16, "max_steps": 2, "eval_steps": 1, "save_steps": 1,
                 "final_eval": "none", "tensorboard": False, "eval_before_training": False},
        "settings": [{"name": "tau 0.05", "temperature": 0.05}, {"name": "tau 1", "temperature": 1.0}],
        "paper": {"tau 0.05": 50.0},
        **extra,
    }  # fmt: skip
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid), encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_grid_runs_aggregates_skips_and_refuses_changes(tmp_path, tiny_bert, files, monkeypatch):
    grid_file = _grid(tmp_path, tiny_bert, files)
    out = tmp_path / "exp"
    lines: list[str] = []
    result = run_experiment(grid_file, out, echo=lines.append)
    assert not result.failed and len(result.cells) == 4
    assert any(line.startswith("[4/4] ") for line in lines) and any("ETA" in line for line in lines)
    # every cell is an ordinary run directory
    for cell in result.cells:
        meta = json.loads((Path(cell.out) / "simcse.json").read_text())
        assert meta["finished"] and meta["training_config"]["seed"] == cell.seed
        assert cell.metrics["dev_spearman"] == pytest.approx(meta["dev"]["dev_spearman"])
    # aggregation: mean and sample std over the seeds of each setting
    row = result.rows[0]
    values = [c.metrics["dev_spearman"] for c in result.cells if c.setting == "tau 0.05"]
    assert row["metrics"]["dev_spearman"]["n"] == 2
    assert row["metrics"]["dev_spearman"]["mean"] == pytest.approx(sum(values) / 2)
    assert row["metrics"]["dev_spearman"]["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    table = (out / "results.md").read_text()
    header = "| Setting | dev | n | wall s | s / 1k steps | time vs tau 0.05 | paper |"
    assert header in table and "| tau 0.05 |" in table and "50.0" in table and "| 1.00x |" in table
    timing = result.cells[0].metrics
    assert timing["wall_s"] >= 0 and timing["train_s_per_1000_steps"] > 0
    saved = json.loads((out / "results.json").read_text())
    assert [s["setting"] for s in saved["settings"]] == ["tau 0.05", "tau 1"] and len(saved["cells"]) == 4
    assert (out / "results.csv").read_text().splitlines()[0].startswith("setting,n,dev_spearman_mean")
    for suffix in ("png", "svg"):
        assert (out / f"tiny.{suffix}").stat().st_size > 1000
    # re-running trains nothing
    import simcse.experiments.runner as runner

    monkeypatch.setattr(runner, "run_command", lambda *a, **k: pytest.fail("a finished cell ran again"))
    again = run_experiment(grid_file, out, echo=lines.append)
    assert [c.status for c in again.cells] == ["skipped"] * 4
    assert again.rows[0]["metrics"]["dev_spearman"] == row["metrics"]["dev_spearman"]
    # a run saved by an older simcse lacks the options added since: they ran at their defaults
    saved = Path(result.cells[0].out) / "train_config.yaml"
    values = yaml.safe_load(saved.read_text())
    values.pop("positive")
    saved.write_text(yaml.safe_dump(values))
    assert [c.status for c in run_experiment(grid_file, out, echo=lines.append).cells] == ["skipped"] * 4
    # a changed setting is refused, naming the cell and the difference; nothing is overwritten
    changed = yaml.safe_load(grid_file.read_text())
    changed["settings"][1]["temperature"] = 0.5
    grid_file.write_text(yaml.safe_dump(changed))
    with pytest.raises(ConfigError, match=r"tau-1/seed1 was trained with other settings: temperature=1.0"):
        run_experiment(grid_file, out, echo=lines.append)


@pytest.mark.slow
def test_an_interrupted_cell_resumes_from_its_checkpoint(tmp_path, tiny_bert, files):
    grid_file = _grid(tmp_path, tiny_bert, files, seeds=[1])
    out = tmp_path / "exp"
    grid = load_grid(grid_file)
    todo = cells(grid, out)
    run_experiment(grid, out, echo=lambda _: None, plots=False)
    # make the first cell look interrupted after its checkpoint: not finished
    meta_path = todo[0].out / "simcse.json"
    meta = json.loads(meta_path.read_text())
    meta["finished"] = False
    meta_path.write_text(json.dumps(meta))
    states = plan(todo)
    assert states["resume"] == [todo[0]] and states["done"] == [todo[1]]
    lines: list[str] = []
    result = run_experiment(grid, out, echo=lines.append, plots=False)
    assert [c.status for c in result.cells] == ["done", "skipped"]
    log = (out / "logs" / f"{slug('tau 0.05')}-seed1.log").read_text()
    commands = [line for line in log.splitlines() if line.startswith("$ ")]
    assert len(commands) == 2 and commands[-1].endswith(" --resume") and not commands[0].endswith("--resume")


@pytest.mark.slow
def test_a_failed_cell_does_not_stop_the_others_and_is_named(tmp_path, tiny_bert, files, capsys):
    grid_file = _grid(tmp_path, tiny_bert, files, seeds=[1])
    grid = yaml.safe_load(grid_file.read_text())
    grid["settings"] = [
        grid["settings"][0],
        {"name": "missing model", "model_name_or_path": str(tmp_path / "nope")},
    ]
    grid_file.write_text(yaml.safe_dump(grid))
    code, out, err = run(capsys, ["experiment", str(grid_file), "--out", str(tmp_path / "exp"), "--no-plots"])
    assert code == 1
    assert "missing model seed 1 failed: exit status 2; see " in err and "missing-model-seed1.log" in err
    assert err.strip().splitlines()[-1].startswith("simcse: error: 1 of 2 cells failed")
    assert "| tau 0.05 |" in out and "| missing model | - | 0 (1 failed) |" in out


def test_missing_data_is_one_error_before_any_cell_starts(tmp_path, tiny_bert, files, capsys):
    grid_file = _grid(tmp_path, tiny_bert, files, seeds=[1, 2])
    grid = yaml.safe_load(grid_file.read_text())
    grid["settings"] += [{"name": "gone a", "train_file": str(tmp_path / "nope.txt")},
                         {"name": "gone b", "train_file": str(tmp_path / "nope.txt"), "temperature": 0.1}]  # fmt: skip
    grid_file.write_text(yaml.safe_dump(grid))
    out_dir = tmp_path / "exp"
    code, _, err = run(capsys, ["experiment", str(grid_file), "--out", str(out_dir), "--no-plots"])
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"simcse: error: {tmp_path / 'nope.txt'}: training file not found (needed by gone a, gone b)"
    )
    assert not any(out_dir.glob("*/metrics.jsonl"))  # no cell started, not even the ones whose data is there


def test_grid_files_are_checked_whole(tmp_path, tiny_bert, files):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"nmae": "x", "seeds": [1, -2], "metric": "bleu",
                                   "settings": [{"name": "a"}, {"name": "a"}], "paper": {"b": 1.0}}))  # fmt: skip
    with pytest.raises(ConfigError) as e:
        load_grid(bad)
    message = str(e.value)
    for part in ("unknown grid key(s) nmae", "seeds must be", "metric must be one of", "unique: a",
                 "paper names settings the grid lacks: b"):  # fmt: skip
        assert part in message, message
    grid_file = _grid(tmp_path, tiny_bert, files)
    grid = yaml.safe_load(grid_file.read_text())
    grid["settings"] += [{"name": "bad tau", "temperature": -1}, {"name": "own dir", "output_dir": "x"}]
    grid_file.write_text(yaml.safe_dump(grid))
    with pytest.raises(ConfigError) as e:
        cells(load_grid(grid_file), tmp_path / "exp")
    assert "setting 'bad tau'" in str(e.value) and "temperature must be > 0" in str(e.value)
    assert "setting 'own dir': output_dir is set by the experiment runner" in str(e.value)
    assert not (tmp_path / "exp").exists()


def test_a_bad_override_is_named_once_not_once_per_setting(tmp_path, tiny_bert, files):
    grid = load_grid(_grid(tmp_path, tiny_bert, files))
    assert len(grid.settings) > 1
    with pytest.raises(ConfigError) as e:
        cells(grid, tmp_path / "exp", overrides={"final_eval": "bogus", "output_dir": "x"})
    message = str(e.value)
    assert message.count("final_eval must be one of") == 1, message
    assert "the overrides (--set, --max_steps) (applied to every setting of" in message
    assert "the overrides (--set, --max_steps): output_dir is set by the experiment runner" in message
    grid.settings[0].overrides["temperature"] = -1  # wrong in one setting alone: that setting is named
    with pytest.raises(ConfigError) as e:
        cells(grid, tmp_path / "exp")
    one = str(e.value)
    assert f"setting {grid.settings[0].name!r}: temperature must be > 0" in one, one
    assert "every setting" not in one and "overrides" not in one and one.count("temperature must be") == 1


def test_axes_multiply_the_settings(tmp_path, tiny_bert, files):
    grid_file = _grid(
        tmp_path, tiny_bert, files, axes={"batch_size": [4, 8], "learning_rate": [1e-5]}, paper={}
    )
    grid = load_grid(grid_file)
    assert [s.name for s in grid.settings] == [
        "tau 0.05, batch_size=4, learning_rate=1e-05", "tau 0.05, batch_size=8, learning_rate=1e-05",
        "tau 1, batch_size=4, learning_rate=1e-05", "tau 1, batch_size=8, learning_rate=1e-05",
    ]  # fmt: skip
    assert grid.settings[1].overrides == {"temperature": 0.05, "batch_size": 8, "learning_rate": 1e-5}


def test_cli_dry_run_and_bad_options(tmp_path, tiny_bert, files, capsys):
    grid_file = _grid(tmp_path, tiny_bert, files)
    code, out, _ = run(capsys, ["experiment", str(grid_file), "--out", str(tmp_path / "e"), "--dry-run",
                                "--seeds", "7", "--max_steps", "3"])  # fmt: skip
    assert code == 0 and out.count("fresh ") == 2 and "tau 1 seed 7:" in out
    assert not (tmp_path / "e").exists()
    code, _, err = run(capsys, ["experiment", str(grid_file), "--seeds", "1,x"])
    assert_one_line_error(code, err, "--seeds")
    code, _, err = run(capsys, ["experiment", "no-such-grid"])
    assert_one_line_error(code, err, "unknown experiment 'no-such-grid'")
    code, _, err = run(capsys, ["experiment", str(grid_file), "--set", "temperature=-3", "--dry-run"])
    assert_one_line_error(code, err, "temperature must be > 0")


@pytest.mark.slow
def test_submitit_runs_the_cells_through_its_executor(tmp_path, tiny_bert, files):
    pytest.importorskip("submitit")
    grid_file = _grid(tmp_path, tiny_bert, files, seeds=[1])
    out = tmp_path / "exp"
    result = run_experiment(grid_file, out, launcher="submitit", launcher_options={"cluster": "debug"},
                            echo=lambda _: None, plots=False)  # fmt: skip
    assert [c.status for c in result.cells] == ["done", "done"]
    assert (out / "submitit").is_dir()


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    assert mean_std([5.0]) == (5.0, None, 1)


@pytest.mark.slow
def test_cells_that_log_geometry_get_the_alignment_uniformity_figure(tmp_path, tiny_bert, files, data_dir):
    grid_file = _grid(tmp_path, tiny_bert, files, seeds=[1], paper={})
    grid = yaml.safe_load(grid_file.read_text())
    grid["base"].update(geometry_steps=2, data_dir=str(data_dir))
    grid["settings"] = grid["settings"][:1] + [{"name": "no dropout", "dropout": 0.0}]
    grid_file.write_text(yaml.safe_dump(grid))
    result = run_experiment(grid_file, tmp_path / "exp", echo=lambda _: None)
    names = [p.name for p in result.files]
    assert "tiny-geometry.png" in names and "tiny-geometry.svg" in names
    svg = (tmp_path / "exp" / "tiny-geometry.svg").read_text()
    assert "tau 0.05" in svg and "no dropout" in svg and "uniformity (lower is better)" in svg


@pytest.mark.slow
def test_report_tabulates_the_finished_cells_and_trains_nothing(tmp_path, tiny_bert, files):
    """``run=False`` (``--report``): the tables of what has finished, n counting only those cells."""
    from simcse.core.errors import SimCSEError

    grid_path = _grid(tmp_path, tiny_bert, files)
    out = tmp_path / "out"
    with pytest.raises(SimCSEError, match="no cell of tiny has finished"):
        run_experiment(grid_path, out, run=False, plots=False)
    run_experiment(grid_path, out, seeds=[1], plots=False)  # one seed of the grid's two
    report = run_experiment(grid_path, out, run=False, plots=False)
    assert all(c.seed == 1 for c in report.cells) and len(report.cells) == 2
    assert all(row["metrics"]["dev_spearman"]["n"] == 1 for row in report.rows)
    assert "2 of 4 cells finished" in (out / "results.md").read_text()
    assert not (out / "tau-0.05" / "seed2").exists()  # nothing trained
