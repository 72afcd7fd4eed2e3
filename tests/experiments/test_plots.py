"""Alignment/uniformity logged during training, and the figures drawn from runs' metrics."""

from __future__ import annotations

import json
import math

import pytest

from simcse.core.errors import SimCSEError
from simcse.experiments.plots import plot_curves, plot_geometry
from tests.helpers import SENTENCES, assert_one_line_error, run, train_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert, data_dir):
    from simcse.training.loop import train

    base = tmp_path_factory.mktemp("geometry-runs")
    txt = base / "t.txt"
    txt.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    outs = []
    for name, dropout in (("dropout", None), ("no-dropout", 0.0)):
        out = base / name
        train(train_config(tiny_bert, txt, out, geometry_steps=2, dev_eval=True, eval_steps=2,
                           eval_before_training=False, data_dir=str(data_dir), dropout=dropout,
                           learning_rate=1e-3))  # fmt: skip
        outs.append(out)
    return outs


def test_geometry_is_logged_before_training_and_every_n_steps(runs):
    records = [json.loads(line) for line in (runs[0] / "metrics.jsonl").read_text().splitlines()]
    geometry = [r for r in records if r["kind"] == "geometry"]
    assert [r["step"] for r in geometry] == [0, 2, 4]
    for r in geometry:
        assert 0 <= r["align"] <= 4 and r["uniform"] <= 0 and math.isfinite(r["uniform"])
    assert len({r["align"] for r in geometry}) > 1  # training moves it


def test_the_figures_are_written_with_labelled_axes(runs, tmp_path):
    paths = plot_geometry(runs, tmp_path / "fig2.png", labels=["unsup SimCSE", "no dropout"])
    assert [p.name for p in paths] == ["fig2.png", "fig2.svg"]
    assert all(p.stat().st_size > 2000 for p in paths)
    svg = paths[1].read_text()
    for text in ("uniformity (lower is better)", "alignment (lower is better)", "unsup SimCSE", "no dropout"):
        assert text in svg
    paths = plot_curves(runs, tmp_path / "curves")
    svg = paths[1].read_text()
    assert "training loss" in svg and "STS-B dev (Spearman x 100)" in svg and "step" in svg


def test_plot_errors_are_one_line(runs, tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "metrics.jsonl").write_text('{"step": 1, "kind": "train", "loss": 1.0}\nnot json\n')
    with pytest.raises(SimCSEError, match=r"metrics.jsonl:2: not a JSON record"):
        plot_curves([plain], tmp_path / "x")
    (plain / "metrics.jsonl").write_text('{"step": 1, "kind": "train", "loss": 1.0}\n')
    code, _, err = run(capsys, ["plot", "geometry", str(plain), "--out", str(tmp_path / "g.png")])
    assert_one_line_error(code, err, "no alignment/uniformity records", "--geometry_steps")
    code, _, err = run(capsys, ["plot", "curves", str(tmp_path / "missing")])
    assert_one_line_error(code, err, "no metrics.jsonl here")
    code, _, err = run(capsys, ["plot", "curves", *map(str, runs), "--labels", "one"])
    assert_one_line_error(code, err, "--labels names 1 runs, 2 were given")
    assert not list(tmp_path.glob("g.*"))
    code, out, _ = run(capsys, ["plot", "curves", *map(str, runs), "--out", str(tmp_path / "c.png")])
    assert code == 0 and "c.png" in out and (tmp_path / "c.svg").exists()
