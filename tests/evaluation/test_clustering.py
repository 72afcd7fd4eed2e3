"""Clustering: hand-checked accuracy under the best matching, k-means on separable points, labelled
files, and ``simcse eval --tasks clustering``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simcse.core.errors import DataError
from simcse.evaluation.clustering import (
    ClusterData,
    clustering_accuracy,
    read_labelled_file,
    score_clustering,
)
from simcse.evaluation.suite import resolve_tasks
from tests.helpers import SENTENCES, assert_one_line_error, run


def test_accuracy_under_the_best_one_to_one_matching():
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert clustering_accuracy(labels, np.array([1, 1, 0, 0, 2, 2])) == 1.0  # renamed clusters: perfect
    assert clustering_accuracy(labels, np.array([0, 1, 0, 1, 2, 2])) == pytest.approx(4 / 6)
    assert clustering_accuracy(labels, np.array([0, 0, 0, 0, 0, 0])) == pytest.approx(2 / 6)


def test_kmeans_finds_separable_groups_and_is_deterministic_per_seed():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10
    points = np.concatenate([c + rng.normal(scale=0.1, size=(20, 3)) for c in centres])
    sentences = [f"s{i}" for i in range(60)]
    data = ClusterData("toy", sentences, np.repeat([2, 0, 1], 20), ["a", "b", "c"])
    lookup = dict(zip(sentences, points))

    def embed(batch):
        return np.stack([lookup[s] for s in batch])

    result = score_clustering(data, embed, seeds=(0, 1, 2))
    assert result["acc"] == pytest.approx(100.0) and result["nmi"] == pytest.approx(100.0)
    assert result["k"] == 3 and result["n"] == 60 and len(result["acc_per_seed"]) == 3
    noisy = ClusterData("noisy", sentences, rng.integers(0, 3, 60), ["a", "b", "c"])
    first, again = score_clustering(noisy, embed, seeds=(5, 6)), score_clustering(noisy, embed, seeds=(5, 6))
    assert first == again and first["acc"] < 60


def test_labelled_files(tmp_path):
    good = tmp_path / "topics.csv"
    good.write_text(
        'text,label\n"a dog, running",animal\na cat,animal\nstocks fell,finance\n', encoding="utf-8"
    )
    data = read_labelled_file(good)
    assert data.sentences == ["a dog, running", "a cat", "stocks fell"] and data.label_names == [
        "animal",
        "finance",
    ]
    assert data.labels.tolist() == [0, 0, 1]
    bad = tmp_path / "bad.csv"
    bad.write_text("a dog,animal\nno label here\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv:2: expected 2 columns"):
        read_labelled_file(bad)
    one = tmp_path / "one.tsv"
    one.write_text("a\tx\nb\tx\n", encoding="utf-8")
    with pytest.raises(DataError, match="at least two labels"):
        read_labelled_file(one)


def test_the_clustering_group_names_the_six_sets():
    assert resolve_tasks("clustering") == [
        f"cluster:{n}" for n in ("TREC", "SST2", "MR", "CR", "SUBJ", "MPQA")
    ]


def test_cli_clusters_a_senteval_set_and_a_users_file(tiny_bert, data_dir, tmp_path, capsys):
    mine = tmp_path / "mine.csv"
    mine.write_text("\n".join(f"{s},{'a' if i % 2 else 'b'}" for i, s in enumerate(SENTENCES)) + "\n")
    code, out, _ = run(capsys, ["eval", str(tiny_bert), "--tasks", f"cluster:TREC,cluster:{mine}", "--quiet",
                                "--data-dir", str(data_dir), "--output", str(tmp_path / "r.json")])  # fmt: skip
    assert code == 0 and "clustering acc / NMI" in out and "TREC" in out
    saved = json.loads((tmp_path / "r.json").read_text())["tasks"]
    assert saved["cluster:TREC"]["k"] == 6 and saved["cluster:TREC"]["n"] == 500
    assert 0 <= saved["cluster:TREC"]["acc"] <= 100 and saved[f"cluster:{mine}"]["k"] == 2
    code, _, err = run(
        capsys, ["eval", str(tiny_bert), "--tasks", "cluster:nope", "--data-dir", str(data_dir)]
    )
    assert_one_line_error(code, err, "unknown clustering set 'nope'")
