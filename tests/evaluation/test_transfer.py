"""SentEval transfer tasks: loaders (with each data pitfall), protocol and classifier."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from simcse.core.errors import ConfigError, DataError
from simcse.evaluation.classifier import fit_penalty_path
from simcse.evaluation.transfer import (
    KFOLD_BY_MODE,
    TRANSFER_TASKS,
    TransferData,
    _senteval_order,
    evaluate_transfer_task,
    load_transfer_task,
    transfer_sentences,
)

# ------------------------------------------------------------------------------------- synthetic tasks


def _table_embed(
    table: dict[str, np.ndarray], calls: list[list[str]] | None = None
) -> Callable[[list[str]], np.ndarray]:
    def embed(sentences: list[str]) -> np.ndarray:
        if calls is not None:
            calls.append(list(sentences))
        return np.stack([table[s] for s in sentences]).astype(np.float32)

    return embed


def _blobs(n: int, n_classes: int, dim: int, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    centres = rng.normal(size=(n_classes, dim)) * separation
    return centres[labels] + rng.normal(size=(n, dim)), labels


def _single_sentence_task(
    name: str, split_sizes: dict[str, int], n_classes: int, separation: float, seed: int = 0
) -> tuple[TransferData, dict[str, np.ndarray]]:
    """A task whose sentences name rows of a Gaussian-blob table; lengths vary so the SentEval sort matters."""
    total = sum(split_sizes.values())
    vectors, labels = _blobs(total, n_classes, dim=8, separation=separation, seed=seed)
    table, splits, start = {}, {}, 0
    for split, size in split_sizes.items():
        examples = []
        for i in range(start, start + size):
            sentence = " ".join([f"s{i}"] + ["w"] * (i % 3))
            table[sentence] = vectors[i]
            examples.append((sentence, int(labels[i])))
        splits[split] = examples
        start += size
    return TransferData(name, splits), table


def test_separable_blobs_score_near_100() -> None:
    data, table = _single_sentence_task("MR", {"all": 300}, 2, separation=6.0)
    result = evaluate_transfer_task(data, _table_embed(table), mode="dev")
    assert result["acc"] > 97 and result["devacc"] > 97
    assert result["n"] == result["ndev"] == result["ntest"] == 300


def test_random_labels_score_near_50() -> None:
    data, table = _single_sentence_task("CR", {"all": 400}, 2, separation=0.0)
    result = evaluate_transfer_task(data, _table_embed(table), mode="dev")
    assert 35 < result["acc"] < 65


def test_deterministic_given_seed_and_seed_changes_folds() -> None:
    data, table = _single_sentence_task("SUBJ", {"all": 200}, 2, separation=0.0)
    first = evaluate_transfer_task(data, _table_embed(table), mode="dev", seed=1111)
    again = evaluate_transfer_task(data, _table_embed(table), mode="dev", seed=1111)
    other = evaluate_transfer_task(data, _table_embed(table), mode="dev", seed=7)
    assert first == again
    assert (first["acc"], first["devacc"]) != (other["acc"], other["devacc"])


@pytest.mark.parametrize("mode", sorted(KFOLD_BY_MODE))
def test_outer_fold_count_per_mode(mode: str) -> None:
    data, table = _single_sentence_task("MPQA", {"all": 100}, 2, separation=3.0)
    result = evaluate_transfer_task(data, _table_embed(table), mode=mode)
    assert len(result["l2reg"]) == {"test": 10, "dev": 5, "fasttest": 5}[mode]
    assert set(result["l2reg"]) <= {1e-5, 1e-4, 1e-3, 1e-2}


def test_embed_called_once_with_transfer_sentences() -> None:
    data, table = _single_sentence_task("TREC", {"train": 120, "test": 30}, 6, separation=5.0)
    calls: list[list[str]] = []
    result = evaluate_transfer_task(data, _table_embed(table, calls), mode="dev")
    assert calls == [transfer_sentences(data)]
    assert result["acc"] > 85 and result["n"] == result["ntest"] == 30 and result["ndev"] == 120


def test_sst2_uses_dev_for_selection_and_reports_test() -> None:
    data, table = _single_sentence_task("SST2", {"train": 200, "dev": 60, "test": 80}, 2, separation=5.0)
    result = evaluate_transfer_task(data, _table_embed(table), mode="test")
    assert result["acc"] > 95 and result["devacc"] > 95
    assert (result["n"], result["ndev"], result["ntest"]) == (80, 60, 80)
    assert result["l2reg"] in (1e-5, 1e-4, 1e-3, 1e-2)


def test_mrpc_pairs_learn_from_difference_features_and_report_f1() -> None:
    rng = np.random.default_rng(3)
    table, splits = {}, {}
    for split, size in (("train", 160), ("test", 60)):
        examples = []
        for i in range(size):
            a, b, label = f"{split} a{i}", f"{split} b{i}", i % 2
            table[a] = rng.normal(size=6)
            # paraphrases are near-copies, non-paraphrases independent vectors
            table[b] = table[a] + 0.05 * rng.normal(size=6) if label else rng.normal(size=6)
            examples.append((a, b, label))
        splits[split] = examples
    data = TransferData("MRPC", splits)
    sentences = transfer_sentences(data)
    assert sentences[:160] == [a for a, _, _ in splits["train"]]
    assert sentences[160:320] == [b for _, b, _ in splits["train"]]
    result = evaluate_transfer_task(data, _table_embed(table), mode="dev")
    assert result["acc"] > 90 and result["f1"] > 90


def test_bad_mode_and_bad_embedding_shape() -> None:
    data, table = _single_sentence_task("MR", {"all": 20}, 2, separation=3.0)
    with pytest.raises(ConfigError, match="mode"):
        evaluate_transfer_task(data, _table_embed(table), mode="full")
    with pytest.raises(ValueError, match="shape"):
        evaluate_transfer_task(data, lambda sentences: np.zeros((3, 4), dtype=np.float32))


def test_senteval_order_sorts_by_length_then_label_stably() -> None:
    examples = [("a b c", 1), ("x y", 1), ("p q", 0), ("z", 1), ("u v", 1)]
    assert _senteval_order(examples).tolist() == [3, 2, 1, 4, 0]
    pairs = [("a b", "c", 1), ("a", "b c d", 0), ("a", "b c", 1), ("a", "b c", 0)]
    assert _senteval_order(pairs).tolist() == [3, 2, 1, 0]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_objective_matches_sklearn_with_penalised_bias(n_classes: int) -> None:
    """Mean CE + l2/2 ||W, b||^2 equals sklearn with a constant column and C = 1/(l2 n) (2/(l2 n) binary)."""
    x, y = _blobs(300, n_classes, dim=5, separation=1.0, seed=1)
    l2reg = 1e-2
    params = fit_penalty_path(x, y, n_classes, [l2reg])[0]
    c = (2.0 if n_classes == 2 else 1.0) / (l2reg * len(y))
    reference = LogisticRegression(C=c, fit_intercept=False, tol=1e-12, max_iter=10_000)
    reference.fit(np.c_[x, np.ones(len(y))], y)
    if n_classes == 2:
        np.testing.assert_allclose(params[1] - params[0], reference.coef_[0], rtol=1e-4, atol=1e-6)
    else:
        np.testing.assert_allclose(params, reference.coef_, rtol=1e-4, atol=1e-6)


def test_warm_started_penalty_path_equals_separate_fits() -> None:
    x, y = _blobs(200, 3, dim=4, separation=1.5, seed=2)
    path = fit_penalty_path(x, y, 3, [1e-5, 1e-4, 1e-3, 1e-2])
    for l2reg, params in zip([1e-5, 1e-4, 1e-3, 1e-2], path):
        np.testing.assert_allclose(params, fit_penalty_path(x, y, 3, [l2reg])[0], rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------------------------- loaders


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def test_mr_style_lines_keep_escapes_and_empty_lines(tmp_path: Path) -> None:
    _write(tmp_path / "MR/rt-polarity.pos", b"the film is a M-mM-^S gem .  \n  two   spaces \n")
    _write(tmp_path / "MR/rt-polarity.neg", b"dull .\n\nnot \xe9lan .\n")
    data = load_transfer_task("MR", tmp_path)
    assert data.splits == {
        "all": [
            ("the film is a M-mM-^S gem .", 1),
            ("two spaces", 1),
            ("dull .", 0),
            ("", 0),
            ("not \xe9lan .", 0),
        ]
    }


def test_subj_objective_file_is_label_1(tmp_path: Path) -> None:
    _write(tmp_path / "SUBJ/subj.objective", b"the plot .\n")
    _write(tmp_path / "SUBJ/subj.subjective", b"i loved it .\n")
    assert load_transfer_task("SUBJ", tmp_path).splits["all"] == [("the plot .", 1), ("i loved it .", 0)]


def test_trec_latin1_byte_and_coarse_labels(tmp_path: Path) -> None:
    _write(
        tmp_path / "TREC/train_5500.label",
        b"LOC:city What is the sister\xf0city of Rome ?\nNUM:date When  ?\n",
    )
    _write(tmp_path / "TREC/TREC_10.label", b"ABBR:exp What does NASA stand for ?\r\nHUM:ind Who is it ?\r\n")
    data = load_transfer_task("TREC", tmp_path)
    assert data.splits["train"] == [("What is the sister\xf0city of Rome ?", 4), ("When ?", 5)]
    assert data.splits["test"] == [("What does NASA stand for ?", 0), ("Who is it ?", 3)]


@pytest.mark.parametrize(
    "bad_line, message",
    [
        (b"FOO:bar What ?", "COARSE"),
        (b"no colon here", "COARSE"),
        (b"DESC:def", "no question"),
        (b"", "COARSE"),
    ],
)
def test_trec_malformed_line_names_line(tmp_path: Path, bad_line: bytes, message: str) -> None:
    _write(tmp_path / "TREC/train_5500.label", b"DESC:def What is it ?\n" + bad_line + b"\nHUM:ind Who ?\n")
    _write(tmp_path / "TREC/TREC_10.label", b"DESC:def What is it ?\n")
    with pytest.raises(DataError, match=message) as caught:
        load_transfer_task("TREC", tmp_path)
    assert caught.value.line == 2 and caught.value.path.endswith("train_5500.label")
    assert "train_5500.label:2:" in str(caught.value)


_MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n".encode()


def test_mrpc_bom_header_and_stray_quotes(tmp_path: Path) -> None:
    rows = '1\t1\t2\tHe said "yes .\tHe said yes " .\n0\t3\t4\t"Quoted" start\tplain  end \n'
    _write(tmp_path / "MRPC/msr_paraphrase_train.txt", _MRPC_HEADER + rows.encode())
    _write(tmp_path / "MRPC/msr_paraphrase_test.txt", _MRPC_HEADER + b"1\t5\t6\ta\tb\n")
    data = load_transfer_task("MRPC", tmp_path)
    assert data.splits["train"] == [
        ('He said "yes .', 'He said yes " .', 1),
        ('"Quoted" start', "plain end", 0),
    ]
    assert data.splits["test"] == [("a", "b", 1)]
    assert transfer_sentences(data) == [
        'He said "yes .',
        '"Quoted" start',
        'He said yes " .',
        "plain end",
        "a",
        "b",
    ]


@pytest.mark.parametrize(
    "body, line, message",
    [
        (b"1\t1\t2\ta\tb\n1\t3\t4\tonly four\n", 3, "5 tab-separated fields"),
        (b"1\t1\t2\ta\tb\n1\t1\t2\ta\tb\textra\n", 3, "5 tab-separated fields"),
        (b"yes\t1\t2\ta\tb\n", 2, "bad label"),
        (b"2\t1\t2\ta\tb\n", 2, "bad label"),
    ],
)
def test_mrpc_malformed_line_names_line(tmp_path: Path, body: bytes, line: int, message: str) -> None:
    _write(tmp_path / "MRPC/msr_paraphrase_train.txt", _MRPC_HEADER + body)
    _write(tmp_path / "MRPC/msr_paraphrase_test.txt", _MRPC_HEADER + b"1\t5\t6\ta\tb\n")
    with pytest.raises(DataError, match=message) as caught:
        load_transfer_task("MRPC", tmp_path)
    assert caught.value.line == line


def test_mrpc_without_header_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path / "MRPC/msr_paraphrase_train.txt", b"1\t1\t2\ta\tb\n")
    _write(tmp_path / "MRPC/msr_paraphrase_test.txt", _MRPC_HEADER + b"1\t5\t6\ta\tb\n")
    with pytest.raises(DataError, match="header") as caught:
        load_transfer_task("MRPC", tmp_path)
    assert caught.value.line == 1


def _write_sst2(root: Path, train: bytes) -> None:
    _write(root / "SST/binary/sentiment-train", train)
    _write(root / "SST/binary/sentiment-dev", b"good .\t1\n")
    _write(root / "SST/binary/sentiment-test", b"bad .\t0\n")


def test_sst2_lines(tmp_path: Path) -> None:
    _write_sst2(tmp_path, b"a  fine film\t1\r\nawful\t0\r\n")
    data = load_transfer_task("SST2", tmp_path)
    assert data.splits == {
        "train": [("a fine film", 1), ("awful", 0)],
        "dev": [("good .", 1)],
        "test": [("bad .", 0)],
    }


@pytest.mark.parametrize(
    "train, line, message",
    [
        (b"ok\t1\nno label here\n", 2, "2 tab-separated fields"),
        (b"ok\t1\nok\t1\t0\n", 2, "2 tab-separated fields"),
        (b"ok\t1\nok\t1\nok\t2\n", 3, "bad label"),
        (b"ok\t1\nbad \xff byte\t0\n", 2, "not valid utf-8"),
        (b"", None, "no examples"),
    ],
)
def test_sst2_malformed_line_names_line(tmp_path: Path, train: bytes, line: int | None, message: str) -> None:
    _write_sst2(tmp_path, train)
    with pytest.raises(DataError, match=message) as caught:
        load_transfer_task("SST2", tmp_path)
    assert caught.value.line == line and caught.value.path.endswith("sentiment-train")


def test_missing_directory_file_and_unknown_task(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="task directory not found") as caught:
        load_transfer_task("CR", tmp_path)
    assert caught.value.path == str(tmp_path / "CR")
    _write(tmp_path / "CR/custrev.pos", b"good .\n")
    with pytest.raises(DataError, match="file not found") as caught:
        load_transfer_task("CR", tmp_path)
    assert caught.value.path == str(tmp_path / "CR/custrev.neg")
    with pytest.raises(ConfigError, match="unknown transfer task"):
        load_transfer_task("SST5", tmp_path)


# -------------------------------------------------------------------------------------------- real data

_EXPECTED_COUNTS = {
    "MR": {"all": 10662},
    "CR": {"all": 3775},
    "SUBJ": {"all": 10000},
    "MPQA": {"all": 10606},
    "SST2": {"train": 67349, "dev": 872, "test": 1821},
    "TREC": {"train": 5452, "test": 500},
    "MRPC": {"train": 4076, "test": 1725},
}


@pytest.mark.integration
def test_real_senteval_tree_counts() -> None:
    data_dir = os.environ.get("SIMCSE_DATA_DIR")
    if not data_dir:
        pytest.skip("SIMCSE_DATA_DIR is not set; point it at the data folder holding senteval/downstream")
    downstream = Path(data_dir) / "senteval" / "downstream"
    for name in TRANSFER_TASKS:
        data = load_transfer_task(name, downstream)
        assert {split: len(examples) for split, examples in data.splits.items()} == _EXPECTED_COUNTS[name], (
            name
        )
