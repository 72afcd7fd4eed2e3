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


class _Table:
    """An encoder of fixed vectors: 'a...' sentences along x, the others along y."""

    def encode(self, sentences, batch_size=128):
        return np.array([[1.0, 0.0] if s.startswith("a") else [0.0, 1.0] for s in sentences])


def test_a_sentence_the_corpus_holds_twice_is_one_neighbour():
    from simcse.experiments.analysis import analyze_model

    pairs = (["a x", "b y"], ["a z", "b w"], np.array([5.0, 1.0]))
    result = analyze_model(_Table(), "t", ["a x", "b y", "a q"], pairs, ["a one", "a one", "b two", "a three"],
                           ["a query"], k=3)  # fmt: skip
    assert [s for s, _ in result.neighbours["a query"]] == ["a one", "a three", "b two"]


def test_the_plots_leave_out_numerical_zeros_and_keep_their_labels_apart(tmp_path):
    pytest.importorskip("matplotlib")
    from simcse.experiments.analysis import NUMERICAL_ZERO, ModelAnalysis, _plots
    from simcse.experiments.plots import pyplot

    values = np.array([1.0, 0.5, 1e-3, 1e-12, 1e-21])  # the last two: rounding of a rank-3 matrix
    groups = {"0-1": np.array([0.1, 0.2, 0.3]), "4-5": np.array([0.7, 0.8, 0.9])}
    plt = pyplot()
    drawn = []
    real = plt.Axes.plot
    plt.Axes.plot = lambda self, *a, **k: drawn.append(a) or real(self, *a, **k)
    try:
        _plots([ModelAnalysis("m", values, {1: 0.8}, 0.1, groups, {})], tmp_path)
    finally:
        plt.Axes.plot = real
    spectrum_line = drawn[0][1]
    assert min(spectrum_line) >= NUMERICAL_ZERO and len(spectrum_line) == 3
    assert (tmp_path / "spectrum.png").is_file() and (tmp_path / "similarity-density.png").is_file()


def test_the_grid_figure_wraps_its_budget_inside_the_figure():
    from simcse.experiments.plots import AXES_SHARE, wrap_to

    budget = ("the embedded all-MiniLM-L6-v2, 50 steps of batch 64 on wiki1m (its first 11,914 rows), max length 32, "
              "precision auto, device auto, 3 seed(s)")  # fmt: skip
    lines = wrap_to(budget, 5.0 * AXES_SHARE, 8)
    assert len(lines) >= 3 and " ".join(lines) == budget
    assert max(map(len, lines)) * 8 * 0.55 <= 5.0 * AXES_SHARE * 72  # each line narrower than the axes
