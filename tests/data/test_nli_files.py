"""SNLI-derived training files: the labels split the pairs, the triples follow nli_for_simcse.csv's rule
(equal to the data directory's own derived file), files are written once, errors name the file."""

from __future__ import annotations

import csv
import shutil

import pytest

from simcse.core.errors import ConfigError, DataError
from simcse.data.nli_files import derive_rows, derived_file
from simcse.training.config import TrainConfig


def _snli(data_dir):
    return data_dir / "senteval" / "downstream" / "SNLI"


def _pairs(snli, split):
    lines = [
        (snli / f"{stem}.{split}").read_text(encoding="utf-8").splitlines() for stem in ("s1", "s2", "labels")
    ]
    return [(p.rstrip(), h.rstrip(), label.strip()) for p, h, label in zip(*lines)]


def test_the_labels_split_every_pair_and_the_triples_equal_the_data_directorys(data_dir):
    snli = _snli(data_dir)
    counts = {
        name: len(derive_rows(snli, name)[1]) for name in ("entailment", "neutral", "contradiction", "all")
    }
    assert counts["all"] == 9842 + 9824 == counts["entailment"] + counts["neutral"] + counts["contradiction"]
    header, triples = derive_rows(snli, "triples")
    assert header == ["sent0", "sent1", "hard_neg"]
    with (data_dir / "nli" / "snli_devtest_triples_for_simcse.csv").open(encoding="utf-8", newline="") as f:
        shared = [tuple(row) for row in csv.reader(f)]
    assert shared[0] == tuple(header) and triples == shared[1:]  # 5,883 rows, the same rule
    _, pairs = derive_rows(snli, "triples-no-hard-negative")
    assert pairs == [t[:2] for t in triples]
    header, quads = derive_rows(snli, "triples-with-neutral")
    assert header == ["sent0", "sent1", "hard_neg", "hard_neg2"] and len(quads) == 5189
    labels = {(p, h): label for split in ("dev", "test") for p, h, label in _pairs(snli, split)}
    assert all(labels[(q[0], q[1])] == "entailment" and labels[(q[0], q[2])] == "contradiction"
               and labels[(q[0], q[3])] == "neutral" for q in quads)  # fmt: skip


def test_a_file_is_derived_once_into_the_data_directory(data_dir, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(_snli(data_dir), copy / "senteval" / "downstream" / "SNLI")
    path = derived_file("snli:contradiction", copy)
    assert path == copy / "nli" / "derived" / "snli_contradiction.csv"
    rows = list(csv.reader(path.open(encoding="utf-8", newline="")))
    assert rows[0] == ["sent0", "sent1"] and len(rows) == 6515 + 1
    stamp = path.stat().st_mtime_ns
    assert derived_file("snli:contradiction", copy).stat().st_mtime_ns == stamp
    assert not list(path.parent.glob("*.tmp"))


def test_errors_name_the_option_or_the_file(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="unknown SNLI-derived file"):
        TrainConfig(train_file="snli:bogus").validate()
    with pytest.raises(DataError, match=r"s1.dev: cannot read the SNLI file"):
        derived_file("snli:all", tmp_path)
    bad = tmp_path / "bad" / "senteval" / "downstream" / "SNLI"
    shutil.copytree(_snli(data_dir), bad)
    labels = (bad / "labels.test").read_text().splitlines()
    labels[4] = "maybe"
    (bad / "labels.test").write_text("\n".join(labels) + "\n")
    with pytest.raises(DataError, match=r"labels.test:5: unknown label 'maybe'"):
        derived_file("snli:all", tmp_path / "bad")
    assert not (tmp_path / "bad" / "nli").exists()


def test_training_on_the_triples_with_a_hard_negative_weight(tiny_bert, data_dir, tmp_path):
    from simcse.training.loop import train
    from tests.helpers import train_config

    copy = tmp_path / "data"
    shutil.copytree(_snli(data_dir), copy / "senteval" / "downstream" / "SNLI")
    result = train(train_config(tiny_bert, "snli:triples", tmp_path / "run", data_dir=str(copy),
                                hard_negative_weight=2.0, max_train_samples=64))  # fmt: skip
    assert result.global_step == 4 and (copy / "nli" / "derived" / "snli_triples.csv").exists()
