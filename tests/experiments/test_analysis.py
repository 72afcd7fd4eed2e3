"""Anisotropy and similarity structure: hand-checked spectrum, mean cosine, gold bins and neighbours, and
``simcse analyze`` writing its files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simcse.experiments.analysis import cosine_by_gold, mean_cosine, nearest, spectrum
from tests.helpers import SENTENCES, assert_one_line_error, run


def test_spectrum_of_a_known_matrix():
    # centred rows spanning two directions with singular values 3 and 1 (and a zero third)
    u = np.array([[1.0, 0], [-1.0, 0], [0, 1.0], [0, -1.0]]) / np.sqrt(2)
    matrix = u @ np.diag([3.0, 1.0]) @ np.array([[1.0, 0, 0], [0, 1.0, 0]]) + 5.0  # a shared offset: removed
    values, share = spectrum(matrix)
    np.testing.assert_allclose(values[:2], [1.0, 1 / 3], atol=1e-9)
    assert values[2] == pytest.approx(0.0, abs=1e-9)
    assert share == {1: pytest.approx(0.9)}  # 9 / (9 + 1); top-10 and top-50 exceed the rank: left out


def test_mean_cosine_equals_the_pairwise_average():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 5)) + 2.0
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = unit @ unit.T
    brute = (cos.sum() - np.trace(cos)) / (7 * 6)
    assert mean_cosine(x) == pytest.approx(brute)


def test_gold_bins_and_neighbours():
    a = np.array([[1.0, 0], [1.0, 0], [1.0, 0], [0, 1.0]])
    b = np.array([[1.0, 0], [0, 1.0], [-1.0, 0], [0, 2.0]])
    groups = cosine_by_gold(a, b, np.array([4.5, 0.5, 1.0, 5.0]))
    assert list(groups) == ["0-1", "1-2", "2-3", "3-4", "4-5"]
    np.testing.assert_allclose(groups["4-5"], [1.0, 1.0])  # 5.0 falls in the last bin
    np.testing.assert_allclose(groups["0-1"], [0.0])
    np.testing.assert_allclose(groups["1-2"], [-1.0])
    assert len(groups["2-3"]) == 0
    hits = nearest(
        np.array([[1.0, 0.1]]), np.array([[0, 1.0], [1.0, 0], [1.0, 1.0]]), ["up", "right", "diag"], 2
    )
    assert [s for s, _ in hits[0]] == ["right", "diag"]


def test_cli_writes_the_tables_and_figures(tiny_bert, tiny_bert4, data_dir, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    out = tmp_path / "analysis"
    code, printed, _ = run(capsys, ["analyze", str(tiny_bert), str(tiny_bert4), "--labels", "base,trained",
                                    "--corpus", str(corpus), "--query", "a dog runs", "--k", "3",
                                    "--data-dir", str(data_dir), "--out", str(out)])  # fmt: skip
    assert code == 0 and "| base |" in printed and "| trained |" in printed
    saved = json.loads((out / "analysis.json").read_text())
    assert [m["name"] for m in saved] == ["base", "trained"]
    assert saved[0]["cosine_by_gold"]["4-5"]["n"] > 100 and -1 <= saved[0]["mean_cosine"] <= 1
    assert len(saved[0]["neighbours"]["a dog runs"]) == 3
    for name in ("spectrum", "similarity-density"):
        svg = (out / f"{name}.svg").read_text()
        assert (out / f"{name}.png").stat().st_size > 2000 and "base" in svg and "trained" in svg
    assert "singular value / largest (log scale)" in (out / "spectrum.svg").read_text()
    assert "cosine similarity" in (out / "similarity-density.svg").read_text()
    bad = tmp_path / "one.txt"
    bad.write_text("only one\n")
    code, _, err = run(capsys, ["analyze", str(tiny_bert), "--corpus", str(bad), "--data-dir", str(data_dir)])
    assert_one_line_error(code, err, "--corpus needs at least two non-empty lines")
