"""The SentEval-protocol classifier against a transcription of SentEval's own code
(``tests/evaluation/senteval_reference.py``), which runs each fold and penalty as its own classifier with the
global random state, as SentEval does; ours runs all of them side by side in one batched model. They must
agree on every accuracy, every chosen penalty and every prediction, and each batched fit must follow its
own classifier's weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simcse.evaluation import senteval_classifier as sc
from tests.evaluation.senteval_reference import (
    SentEvalMLP,
    senteval_inner_kfold,
    senteval_kfold,
    senteval_split,
)


# ------------------------------------------------------------------ the comparison
@pytest.fixture(autouse=True)
def _keep_global_random_state():
    """The transcription seeds the global generators, as SentEval; one thread keeps its many tiny steps
    fast on shared cores."""
    state, threads = np.random.get_state(), torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        yield
    np.random.set_state(state)
    torch.set_num_threads(threads)


def _problem(n: int, n_classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes: accuracies well below 100, so early stopping and the penalty matter."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centres = rng.normal(size=(n_classes, dim))
    return (centres[y] + 1.5 * rng.normal(size=(n, dim))).astype(np.float32), y


def _params(mode: str) -> dict:
    s = sc.SETTINGS[mode]
    return {
        "nhid": 0,
        "optim": s.optim,
        "batch_size": s.batch_size,
        "tenacity": s.tenacity,
        "epoch_size": s.epoch_size,
    }


CPU = torch.device("cpu")


@pytest.mark.parametrize("mode", ["fasttest", pytest.param("test", marks=pytest.mark.slow)])
def test_inner_kfold_matches_senteval(mode):
    x, y = _problem(150, 2, 6, seed=1)
    settings = sc.SETTINGS[mode]
    ours = sc.inner_kfold_protocol(x, y, 2, settings, seed=1111, device=CPU)
    dev, test = senteval_inner_kfold(x, y, 2, _params(mode), settings.kfold, seed=1111)
    assert (ours["devacc"], ours["acc"]) == (dev, test)
    assert 55 < ours["acc"] < 95  # a problem where the details matter


@pytest.mark.parametrize("seed", [1111, 7])
def test_kfold_matches_senteval_with_its_predictions(seed):
    x, y = _problem(260, 3, 5, seed=2)
    train, test = (x[:200], y[:200]), (x[200:], y[200:])
    ours, predicted = sc.kfold_protocol(train, test, 3, sc.SETTINGS["fasttest"], seed=seed, device=CPU)
    dev, acc, yhat = senteval_kfold({"X": train[0], "y": train[1]}, {"X": test[0], "y": test[1]}, 3,
                                    _params("fasttest"), 5, seed=seed)  # fmt: skip
    assert (ours["devacc"], ours["acc"]) == (dev, acc)
    np.testing.assert_array_equal(predicted, yhat)


def test_split_matches_senteval():
    x, y = _problem(300, 2, 8, seed=3)
    X = {"train": x[:200], "valid": x[200:250], "test": x[250:]}
    Y = {"train": y[:200], "valid": y[200:250], "test": y[250:]}
    ours = sc.split_protocol((X["train"], Y["train"]), (X["valid"], Y["valid"]), (X["test"], Y["test"]), 2,
                             sc.SETTINGS["test"], seed=1111, device=CPU)  # fmt: skip
    dev, test = senteval_split(X, Y, 2, _params("test"), seed=1111)
    assert (ours["devacc"], ours["acc"]) == (dev, test)


def test_the_scan_leaves_the_global_random_state_alone():
    x, y = _problem(80, 2, 4, seed=4)
    np.random.seed(5)
    torch.manual_seed(5)
    expected_np, expected_torch = np.random.rand(), torch.rand(1)
    np.random.seed(5)
    torch.manual_seed(5)
    sc.split_protocol(
        (x[:50], y[:50]), (x[50:65], y[50:65]), (x[65:], y[65:]), 2, sc.SETTINGS["dev"], 1111, CPU
    )
    assert np.random.rand() == expected_np and torch.equal(torch.rand(1), expected_torch)


@pytest.mark.parametrize("mode", ["test", "fasttest"])
def test_every_batched_fit_follows_its_own_senteval_classifier(mode):
    """Scans of different sizes (so their batches, last partial batches and passes fall out of step), one
    with a held-out split; each penalty stops on its own. Every fit must end at its own classifier's best
    accuracy and weights."""
    x, y = _problem(400, 3, 6, seed=5)
    rows = np.random.default_rng(0).permutation(400)
    scans = [
        sc.Scan(rows[:150], rows[150:190], sc.L2_REGS),
        sc.Scan(rows[190:260], rows[260:300], sc.L2_REGS),
        sc.Scan(rows[:333], None, sc.L2_REGS),
    ]
    results = sc.run_scans(x, y, 3, scans, sc.SETTINGS[mode], seed=7, device=CPU)
    stopped = set()
    for scan, result in zip(scans, results):
        for p, reg in enumerate(scan.l2regs):
            clf = SentEvalMLP(_params(mode), 6, 3, l2reg=reg, batch_size=sc.SETTINGS[mode].batch_size, seed=7)
            if scan.validation is None:
                accuracy = clf.fit(x[scan.train], y[scan.train], validation_split=0.05)
            else:
                accuracy = clf.fit(
                    x[scan.train], y[scan.train], validation_data=(x[scan.validation], y[scan.validation])
                )
            stopped.add(clf.nepoch)
            assert result.accuracy[p] == accuracy
            torch.testing.assert_close(result.weight[p], clf.model[0].weight.detach(), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(result.bias[p], clf.model[0].bias.detach(), rtol=1e-4, atol=1e-5)
    assert len(stopped) > 1  # the fits did stop at different epochs


def test_scans_need_rows_to_train_and_validate_on():
    x, y = _problem(40, 2, 3, seed=6)
    with pytest.raises(ValueError, match="training and validation rows"):
        sc.run_scans(x, y, 2, [sc.Scan(np.arange(10), None, (0.1,))], sc.SETTINGS["dev"], 1, CPU)
