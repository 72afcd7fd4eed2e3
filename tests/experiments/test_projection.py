"""Projected grid times: the steps of each cell from its config (the paper's files by their published
sizes, a local file by its rows), and the CLI's ``--dry-run --step-time``."""

from __future__ import annotations

from simcse.cli import main
from simcse.experiments.grid import cells, load_grid
from simcse.experiments.projection import cell_steps, projection_lines
from simcse.training.config import TrainConfig


def test_steps_from_max_steps_the_papers_files_and_a_local_file(tmp_path):
    assert cell_steps(TrainConfig(train_file="wiki1m", max_steps=7)) == 7
    assert cell_steps(TrainConfig(train_file="wiki1m", batch_size=64)) == 15_625  # the paper's unsup run
    assert cell_steps(TrainConfig(train_file="nli", batch_size=512, num_epochs=3)) == 1_617  # and sup
    txt = tmp_path / "t.txt"
    txt.write_text("".join(f"sentence {i}\n" for i in range(130)), encoding="utf-8")
    assert cell_steps(TrainConfig(train_file=str(txt), batch_size=64)) == 3  # 64 + 64 + a last batch of 2
    assert (
        cell_steps(TrainConfig(train_file=str(txt), batch_size=64, num_epochs=2, max_train_samples=129)) == 4
    )
    assert cell_steps(TrainConfig(train_file=str(tmp_path / "missing.txt"))) is None


def test_projection_lines_count_every_cell_and_name_the_unknown(tmp_path):
    grid = load_grid("dropout")
    todo = cells(grid, tmp_path, base={"train_file": "wiki1m", "max_train_samples": 0})  # the whole file
    lines = projection_lines(todo, 0.1)
    assert lines[0] == "p = 0.0: 3 cell(s) x 15,625 steps"
    assert lines[-1] == "total: 375,000 steps, about 10.4 h at 0.1 s/step on one device, one cell at a time"
    lost = cells(grid, tmp_path, base={"train_file": str(tmp_path / "gone.txt")}, seeds=[1])
    assert "not counted: p = 0.0" in projection_lines(lost, 1.0)[-1]


def test_cli_step_time(tmp_path, capsys):
    code = main(["experiment", "dropout", "--out", str(tmp_path / "e"), "--dry-run", "--max_steps", "50",
                 "--step-time", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "total: 1,200 steps, about 40 min at 2 s/step" in out
    assert main(["experiment", "dropout", "--step-time", "2"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        "simcse: error: --step-time 2: give a positive number of seconds, with --dry-run"
    )
