"""STS readers and aggregation, geometry, whitening, task resolution, reports, embedding cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from simcse.core.errors import ConfigError, DataError
from simcse.evaluation import geometry, report, sts
from simcse.evaluation.suite import EmbeddingTable, resolve_tasks
from simcse.evaluation.whitening import Whitening


def _write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


# ---------------------------------------------------------------------------------------------- readers
def test_empty_gold_lines_are_skipped_keeping_alignment(tmp_path):
    inp = _write(tmp_path / "STS.input.x.txt", "a b\tc d\ne  f\tg\nh\ti\nj\tk\n")
    gs = _write(tmp_path / "STS.gs.x.txt", "1.0\n\n3.5\n\n")
    pairs = sts.read_sts_subset(inp, gs)
    assert pairs.a == ["a b", "h"] and pairs.b == ["c d", "i"]
    assert pairs.gold.tolist() == [1.0, 3.5] and pairs.lines == [1, 3]


def test_whitespace_is_normalised_like_senteval(tmp_path):
    inp = _write(tmp_path / "i.txt", "  a   man\t plays  \n")
    gs = _write(tmp_path / "g.txt", "2\n")
    assert sts.read_sts_subset(inp, gs).a == ["a man"]


def test_stsb_stray_quotes_are_kept_and_split_on_tabs(tmp_path):
    line = 'main-news\tMSRpar\t2012test\t0001\t4.2\tHe said "yes.\tShe said "no" twice.\n'
    path = _write(tmp_path / "sts-test.csv", line * 3)
    pairs = sts.read_tabular_pairs(path, (5, 6, 4), skip_header=False)
    assert pairs.a[0] == 'He said "yes.' and pairs.b[0] == 'She said "no" twice.'
    assert len(pairs) == 3 and pairs.gold[0] == 4.2


def test_sick_crlf_and_header(tmp_path):
    text = "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\r\n1\tA b\tC d\t4.5\tNEUTRAL\r\n"
    pairs = sts.read_tabular_pairs(_write(tmp_path / "SICK.txt", text), (1, 2, 3), skip_header=True)
    assert pairs.a == ["A b"] and pairs.b == ["C d"] and pairs.gold.tolist() == [4.5]


def test_bom_is_dropped(tmp_path):
    path = _write(tmp_path / "g.txt", "\ufeff3.0\n")
    assert sts.read_lines(path) == ["3.0"]


def test_malformed_lines_name_file_and_line(tmp_path):
    inp = _write(tmp_path / "i.txt", "a\tb\nno tab here\n")
    gs = _write(tmp_path / "g.txt", "1\n2\n")
    with pytest.raises(DataError, match=r"i\.txt:2: expected two"):
        sts.read_sts_subset(inp, gs)
    good = _write(tmp_path / "i2.txt", "a\tb\nc\td\n")
    bad = _write(tmp_path / "g2.txt", "1\nhigh\n")
    with pytest.raises(DataError, match=r"g2\.txt:2: gold score 'high'"):
        sts.read_sts_subset(good, bad)
    with pytest.raises(DataError, match=r"sts-dev\.csv:1: expected at least 7"):
        sts.read_tabular_pairs(_write(tmp_path / "sts-dev.csv", "a\tb\n"), (5, 6, 4), skip_header=False)
    latin = _write(tmp_path / "l.txt", b"ok\tok\n\xe9\tx\n")
    with pytest.raises(DataError, match=r"l\.txt:2: not valid UTF-8"):
        sts.read_lines(latin)
    with pytest.raises(DataError, match="file not found"):
        sts.read_lines(tmp_path / "missing.txt")


# ---------------------------------------------------------------------------------------------- scoring
def _fake_task():
    rng = np.random.default_rng(0)
    subsets = {}
    for name, n, _noise in (("s1", 30, 0.1), ("s2", 50, 1.0), ("s3", 20, 0.5)):
        gold = rng.uniform(0, 5, n)
        a = [f"{name}-a{i}" for i in range(n)]
        b = [f"{name}-b{i}" for i in range(n)]
        subsets[name] = sts.Pairs(a, b, gold, list(range(1, n + 1)))
    return sts.STSData("STS99", "test", subsets), rng


def _embedder(data, rng):
    """2-d embeddings whose cosine follows gold plus subset-specific noise."""
    vectors = {}
    for name, pairs in data.subsets.items():
        noise = {"s1": 0.1, "s2": 1.0, "s3": 0.5}[name]
        for a, b, g in zip(pairs.a, pairs.b, pairs.gold):
            angle = (5 - g) / 5 * 1.2 + rng.normal(0, noise * 0.3)
            vectors[a] = np.array([1.0, 0.0])
            vectors[b] = np.array([math.cos(angle), math.sin(angle)])
    return lambda sentences: np.stack([vectors[s] for s in sentences])


def test_aggregations_all_mean_wmean():
    data, rng = _fake_task()
    embed = _embedder(data, rng)
    per, preds, golds = {}, [], []
    for name, pairs in data.subsets.items():
        pred = sts.cosine_rows(embed(pairs.a), embed(pairs.b))
        per[name] = spearmanr(pred, pairs.gold)[0] * 100
        preds.append(pred)
        golds.append(pairs.gold)
    sizes = {k: len(p) for k, p in data.subsets.items()}
    pooled = spearmanr(np.concatenate(preds), np.concatenate(golds))[0] * 100
    assert sts.score_sts(data, embed, "all")["spearman"] == pytest.approx(pooled)
    assert sts.score_sts(data, embed, "mean")["spearman"] == pytest.approx(np.mean(list(per.values())))
    wmean = sum(per[k] * sizes[k] for k in per) / sum(sizes.values())
    assert sts.score_sts(data, embed, "wmean")["spearman"] == pytest.approx(wmean)
    result = sts.score_sts(data, embed, "all")
    assert result["n"] == 100 and set(result["subsets"]) == {"s1", "s2", "s3"}
    assert -100 <= result["pearson"] <= 100
    with pytest.raises(ValueError):
        sts.score_sts(data, embed, "median")


# ---------------------------------------------------------------------------------------------- geometry
def test_alignment_and_uniformity_hand_computed():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([[0.0, 1.0], [0.0, 1.0]])
    # ||(1,0)-(0,1)||^2 = 2, ||(0,1)-(0,1)||^2 = 0 -> mean 1
    assert geometry.alignment(x, y) == pytest.approx(1.0)
    pts = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # pairwise squared distances: 2, 4, 2 -> log(mean(exp(-2 d)))
    expected = math.log((2 * math.exp(-4) + math.exp(-8)) / 3)
    assert geometry.uniformity(pts) == pytest.approx(expected, rel=1e-5)
    # scale does not matter: embeddings are normalised
    assert geometry.uniformity(pts * 7) == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------------------------- whitening
def test_whitening_gives_identity_covariance_and_reduces_dimension():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) + 3
    w = Whitening.fit(x)
    z = w(x)
    assert np.allclose(z.mean(0), 0, atol=1e-5)
    assert np.allclose(np.cov(z.T), np.eye(6), atol=1e-3)
    assert Whitening.fit(x, 2)(x).shape == (500, 2)
    with pytest.raises(ConfigError, match="--whiten-dim must be in 1..6"):  # the user's option: one line
        Whitening.fit(x, 7)


# ---------------------------------------------------------------------------------------------- tasks, reports
def test_resolve_tasks():
    assert resolve_tasks("sts") == list(sts.STS_TASKS)
    assert resolve_tasks("sts", "dev") == ["STSBenchmark", "SICKRelatedness"]
    assert resolve_tasks("full")[-1] == "MRPC"
    assert resolve_tasks("STS12, MR ,geometry") == ["STS12", "MR", "geometry"]
    with pytest.raises(ConfigError, match="no dev split"):
        resolve_tasks("STS12", "dev")
    with pytest.raises(ConfigError, match="unknown task"):
        resolve_tasks("STS17")
    with pytest.raises(ConfigError, match="mode"):
        resolve_tasks("sts", "final")


def _result():
    tasks = {t: {"spearman": 70.0 + i, "pearson": 60.0 + i, "n": 10} for i, t in enumerate(sts.STS_TASKS)}
    tasks["MRPC"] = {"acc": 70.5, "devacc": 71.0, "f1": 80.1, "n": 5}
    return {
        "model": "m",
        "name": "m",
        "mode": "test",
        "aggregate": "all",
        "tasks": tasks,
        "avg": {"sts": 73.0},
    }


def test_markdown_table_json_and_csv(tmp_path):
    result = _result()
    table = report.markdown_tables([result, {**result, "name": "other"}])
    lines = table.splitlines()
    assert lines[0].split("|")[1:-1] == [
        " Model ",
        " STS12 ",
        " STS13 ",
        " STS14 ",
        " STS15 ",
        " STS16 ",
        " STS-B ",
        " SICK-R ",
        " Avg.  ",
    ]
    assert "| m " in lines[2] and "70.00" in lines[2] and "73.00" in lines[2]
    assert "| other" in lines[3]
    assert "MRPC" in table and "70.50" in table
    assert "60.00" in report.markdown_tables([result], "pearson")
    path = report.write_json(result, tmp_path / "r.json")
    assert json.loads(path.read_text())["tasks"]["STS12"]["spearman"] == 70.0
    csv_path = tmp_path / "runs.csv"
    report.append_csv(result, csv_path)
    report.append_csv(result, csv_path)
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("time,model,mode")
    assert ",70.00," in rows[1] and ",70.50," in rows[1]


class _CountingEncoder:
    def __init__(self):
        self.calls = []

    def fingerprint(self):
        return "abc"

    def encode(self, sentences, batch_size=128, dtype=None, show_progress=False):
        self.calls.append(list(sentences))
        return np.array([[len(s), 1.0] for s in sentences], dtype=np.float32)


def test_embedding_table_encodes_each_distinct_sentence_once_and_caches(tmp_path):
    enc = _CountingEncoder()
    table = EmbeddingTable(enc, ["a", "bb", "a", "ccc", "bb"], cache_dir=tmp_path)
    assert enc.calls == [["a", "bb", "ccc"]]
    assert table(["ccc", "a"]).tolist() == [[3, 1], [1, 1]]
    again = EmbeddingTable(enc, ["a", "bb", "ccc"], cache_dir=tmp_path)
    assert len(enc.calls) == 1  # served from the cache
    assert again(["bb"]).tolist() == [[2, 1]]
