"""The SentEval-protocol classifier against a transcription of SentEval's own code (facebookresearch/SentEval
``senteval/tools/classifier.py`` and ``validation.py``, modernised only where PyTorch changed: no
``Variable``, no ``.cuda()``, and the loss a mean, as ``size_average = False`` set after construction has
been a no-op since PyTorch 0.4.1). The transcription runs each penalty as its own classifier with the global
random state, as SentEval does; ours runs a scan side by side. They must agree on every accuracy, every
chosen penalty and every prediction."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn

from simcse.evaluation import senteval_classifier as sc


# ------------------------------------------------------------------ SentEval, transcribed
class SentEvalMLP:
    def __init__(self, params, inputdim, nclasses, l2reg=0.0, batch_size=64, seed=1111):
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.inputdim, self.nclasses, self.l2reg = inputdim, nclasses, l2reg
        self.tenacity = params["tenacity"]
        self.epoch_size = params["epoch_size"]
        self.max_epoch = params.get("max_epoch", 200)
        self.batch_size = params["batch_size"]
        self.model = nn.Sequential(nn.Linear(self.inputdim, self.nclasses))
        self.loss_fn = nn.CrossEntropyLoss()
        optim_fn = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}[params["optim"]]
        self.optimizer = optim_fn(self.model.parameters())
        self.optimizer.param_groups[0]["weight_decay"] = self.l2reg

    def prepare_split(self, X, y, validation_data=None, validation_split=None):
        if validation_data is not None:
            trainX, trainy = X, y
            devX, devy = validation_data
        else:
            permutation = np.random.permutation(len(X))
            trainidx = permutation[int(validation_split * len(X)) :]
            devidx = permutation[0 : int(validation_split * len(X))]
            trainX, trainy = X[trainidx], y[trainidx]
            devX, devy = X[devidx], y[devidx]
        return (torch.FloatTensor(trainX), torch.LongTensor(trainy), torch.FloatTensor(devX),
                torch.LongTensor(devy))  # fmt: skip

    def fit(self, X, y, validation_data=None, validation_split=None, early_stop=True):
        self.nepoch = 0
        bestaccuracy = -1
        stop_train = False
        early_stop_count = 0
        trainX, trainy, devX, devy = self.prepare_split(X, y, validation_data, validation_split)
        while not stop_train and self.nepoch <= self.max_epoch:
            self.trainepoch(trainX, trainy, epoch_size=self.epoch_size)
            accuracy = self.score(devX, devy)
            if accuracy > bestaccuracy:
                bestaccuracy = accuracy
                bestmodel = copy.deepcopy(self.model)
            elif early_stop:
                if early_stop_count >= self.tenacity:
                    stop_train = True
                early_stop_count += 1
        self.model = bestmodel
        return bestaccuracy

    def trainepoch(self, X, y, epoch_size=1):
        self.model.train()
        for _ in range(self.nepoch, self.nepoch + epoch_size):
            permutation = np.random.permutation(len(X))
            for i in range(0, len(X), self.batch_size):
                idx = torch.LongTensor(permutation[i : i + self.batch_size])
                Xbatch, ybatch = X.index_select(0, idx), y.index_select(0, idx)
                output = self.model(Xbatch)
                loss = self.loss_fn(output, ybatch)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        self.nepoch += epoch_size

    def score(self, devX, devy):
        self.model.eval()
        correct = 0
        devX, devy = torch.as_tensor(devX, dtype=torch.float32), torch.as_tensor(devy, dtype=torch.long)
        with torch.no_grad():
            for i in range(0, len(devX), self.batch_size):
                output = self.model(devX[i : i + self.batch_size])
                pred = output.data.max(1)[1]
                correct += pred.long().eq(devy[i : i + self.batch_size].long()).sum().item()
        return 1.0 * correct / len(devX)

    def predict(self, devX):
        self.model.eval()
        devX = torch.FloatTensor(devX)
        yhat = np.array([])
        with torch.no_grad():
            for i in range(0, len(devX), self.batch_size):
                yhat = np.append(yhat, self.model(devX[i : i + self.batch_size]).data.max(1)[1].numpy())
        return np.vstack(yhat)


REGS = [10**t for t in range(-5, -1)]


def senteval_inner_kfold(X, y, nclasses, params, kfold, seed):
    skf = StratifiedKFold(n_splits=kfold, shuffle=True, random_state=1111)
    innerskf = StratifiedKFold(n_splits=kfold, shuffle=True, random_state=1111)
    devresults, testresults = [], []
    for train_idx, test_idx in skf.split(X, y):
        X_train, X_test, y_train, y_test = X[train_idx], X[test_idx], y[train_idx], y[test_idx]
        scores = []
        for reg in REGS:
            regscores = []
            for inner_train_idx, inner_test_idx in innerskf.split(X_train, y_train):
                X_in_train, X_in_test = X_train[inner_train_idx], X_train[inner_test_idx]
                y_in_train, y_in_test = y_train[inner_train_idx], y_train[inner_test_idx]
                clf = SentEvalMLP(
                    params, X.shape[1], nclasses, l2reg=reg, batch_size=params["batch_size"], seed=seed
                )
                clf.fit(X_in_train, y_in_train, validation_data=(X_in_test, y_in_test))
                regscores.append(clf.score(X_in_test, y_in_test))
            scores.append(round(100 * np.mean(regscores), 2))
        optreg = REGS[np.argmax(scores)]
        devresults.append(np.max(scores))
        clf = SentEvalMLP(
            params, X.shape[1], nclasses, l2reg=optreg, batch_size=params["batch_size"], seed=seed
        )
        clf.fit(X_train, y_train, validation_split=0.05)
        testresults.append(round(100 * clf.score(X_test, y_test), 2))
    return round(np.mean(devresults), 2), round(np.mean(testresults), 2)


def senteval_kfold(train, test, nclasses, params, kfold, seed):
    skf = StratifiedKFold(n_splits=kfold, shuffle=True, random_state=seed)
    scores = []
    for reg in REGS:
        scanscores = []
        for train_idx, test_idx in skf.split(train["X"], train["y"]):
            X_train, y_train = train["X"][train_idx], train["y"][train_idx]
            X_test, y_test = train["X"][test_idx], train["y"][test_idx]
            clf = SentEvalMLP(params, train["X"].shape[1], nclasses, l2reg=reg, seed=seed)
            clf.fit(X_train, y_train, validation_data=(X_test, y_test))
            scanscores.append(clf.score(X_test, y_test))
        scores.append(round(100 * np.mean(scanscores), 2))
    optreg = REGS[np.argmax(scores)]
    clf = SentEvalMLP(params, train["X"].shape[1], nclasses, l2reg=optreg, seed=seed)
    clf.fit(train["X"], train["y"], validation_split=0.05)
    yhat = clf.predict(test["X"])
    return np.max(scores), round(100 * clf.score(test["X"], test["y"]), 2), yhat.ravel().astype(int)


def senteval_split(X, y, nclasses, params, seed):
    scores = []
    for reg in REGS:
        clf = SentEvalMLP(params, X["train"].shape[1], nclasses, l2reg=reg, seed=seed)
        clf.fit(X["train"], y["train"], validation_data=(X["valid"], y["valid"]))
        scores.append(round(100 * clf.score(X["valid"], y["valid"]), 2))
    optreg = REGS[np.argmax(scores)]
    clf = SentEvalMLP(params, X["train"].shape[1], nclasses, l2reg=optreg, seed=seed)
    clf.fit(X["train"], y["train"], validation_data=(X["valid"], y["valid"]))
    return np.max(scores), round(100 * clf.score(X["test"], y["test"]), 2)


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


@pytest.mark.parametrize("mode", ["fasttest", "test"])
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
