"""A transcription of SentEval's own classifier and protocols (facebookresearch/SentEval
``senteval/tools/classifier.py`` and ``validation.py``), modernised only where PyTorch changed: no
``Variable``, no ``.cuda()``, and the loss a mean, as ``size_average = False`` set after construction has
been a no-op since PyTorch 0.4.1. Each penalty and fold is its own classifier seeding the global random
state, as in SentEval. The reference of ``tests/evaluation/test_senteval_classifier.py`` and the peer of
``benchmarks/senteval_classifier_speed.py``."""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn


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
