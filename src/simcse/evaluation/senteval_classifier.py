"""SentEval's own classifier and protocols, as SimCSE's ``evaluation.py`` runs them: the paper's transfer
numbers come from this, so it is the default (``classifier="senteval"``); the deterministic L-BFGS fit of
:mod:`simcse.evaluation.classifier` is ``classifier="lbfgs"``.

A transcription of facebookresearch/SentEval ``tools/classifier.py`` (``PyTorchClassifier``, ``MLP`` with
``nhid=0``) and ``tools/validation.py`` (``InnerKFoldClassifier``, ``KFoldClassifier``,
``SplitClassifier``), with SimCSE's settings per mode (``SETTINGS``):

- the model is ``nn.Linear(dim, n_classes)``, initialised right after ``torch.manual_seed(seed)``;
- ``trainepoch`` makes ``epoch_size`` passes, each over a fresh ``np.random.permutation`` in batches of
  ``batch_size``; the loss is the mean cross-entropy (SentEval's ``size_average = False`` set after
  construction has no effect since PyTorch 0.4.1); Adam (lr 1e-3) or RMSprop (lr 1e-2) with
  ``weight_decay = l2reg``;
- ``fit`` repeats ``trainepoch`` while ``nepoch <= max_epoch`` (200), scores the validation data after
  each, keeps a copy of the best model (strictly better accuracy) and stops once the accuracy failed to
  improve more than ``tenacity`` times in all (the count is never reset);
- validation data: the scored fold itself in the penalty scans; 5% of the training part
  (``validation_split=0.05``, the first 5% of a permutation) in the final InnerKFold and KFold refits;
  the dev set for SST2;
- the penalty grid is ``[10**t for t in range(-5, -1)]``; InnerKFold's folds use ``random_state=1111``
  whatever the seed, KFold's use the seed; scores are rounded x100 to 2 decimals before the argmax.

Each classifier re-seeds NumPy and torch with ``seed`` when it is built, so every fit of a scan starts
from the same weights and sees the same batch order, and the fits of one scan differ only in their weight
decay. They are therefore run side by side in one batched model (each penalty its own parameters and
optimizer state, each stopping on its own), which gives the fits of separate runs up to float rounding and
takes one pass instead of four. Nothing here touches the global random state: NumPy's stream comes from a
``RandomState(seed)``, torch's init from ``torch.random.fork_rng``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

L2_REGS = tuple(10.0**t for t in range(-5, -1))
VALIDATION_SPLIT = 0.05
INNER_KFOLD_RANDOM_STATE = 1111  # hard-coded in SentEval's InnerKFoldClassifier


@dataclass(frozen=True)
class Settings:
    """SimCSE's ``params['classifier']`` and ``kfold`` for one evaluation mode."""

    optim: str
    batch_size: int
    tenacity: int
    epoch_size: int
    kfold: int
    max_epoch: int = 200


SETTINGS = {
    "test": Settings("adam", 64, 5, 4, 10),
    "dev": Settings("rmsprop", 128, 3, 2, 5),
    "fasttest": Settings("rmsprop", 128, 3, 2, 5),
}


def _optimizer(name: str, groups: list[dict]) -> torch.optim.Optimizer:
    """SentEval's ``utils.get_optimizer(name)``: the torch optimizer with its default arguments."""
    if name == "adam":
        return torch.optim.Adam(groups)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups)
    raise ValueError(f"unknown SentEval optimizer {name!r}")


class LogisticRegressionScan:
    """SentEval's ``MLP(nhid=0)`` fit once per penalty on the same data, side by side (see module doc)."""

    def __init__(self, dim: int, n_classes: int, l2regs: Sequence[float], settings: Settings, seed: int,
                 device: torch.device):  # fmt: skip
        self.settings, self.device, self.seed = settings, device, seed
        self.rng = np.random.RandomState(seed)  # SentEval: np.random.seed(seed) in the constructor
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            init = torch.nn.Linear(dim, n_classes)
        self.weights = [torch.nn.Parameter(init.weight.detach().clone().to(device)) for _ in l2regs]
        self.biases = [torch.nn.Parameter(init.bias.detach().clone().to(device)) for _ in l2regs]
        groups = [
            {"params": [w, b], "weight_decay": float(reg)}
            for w, b, reg in zip(self.weights, self.biases, l2regs)
        ]
        self.optimizer = _optimizer(settings.optim, groups)

    def fit(
        self, x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None
    ) -> list[float]:
        """Train every penalty's model with early stopping; return each one's best validation accuracy.
        ``validation=None`` holds out the first 5% of a permutation, as ``validation_split=0.05``."""
        if validation is None:
            permutation = self.rng.permutation(len(x))
            cut = int(VALIDATION_SPLIT * len(x))
            validation = (x[permutation[:cut]], y[permutation[:cut]])
            x, y = x[permutation[cut:]], y[permutation[cut:]]
        train_x, train_y = self._tensors(x, y)
        dev_x, dev_y = self._tensors(*validation)
        n = len(self.weights)
        best = [-1.0] * n
        best_state: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n
        misses = [0] * n
        active = list(range(n))
        epoch = 0
        while active and epoch <= self.settings.max_epoch:
            self._train_epochs(train_x, train_y, active)
            epoch += self.settings.epoch_size
            accuracies = self._accuracies(dev_x, dev_y)
            for r in list(active):
                if accuracies[r] > best[r]:
                    best[r] = accuracies[r]
                    best_state[r] = (self.weights[r].detach().clone(), self.biases[r].detach().clone())
                else:
                    if misses[r] >= self.settings.tenacity:
                        active.remove(r)
                    misses[r] += 1
        with torch.no_grad():
            for r, state in enumerate(best_state):
                if state is not None:
                    self.weights[r].copy_(state[0])
                    self.biases[r].copy_(state[1])
        return best

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(np.asarray(x), dtype=torch.float32, device=self.device),
                torch.as_tensor(np.asarray(y), dtype=torch.long, device=self.device))  # fmt: skip

    def _train_epochs(self, x: torch.Tensor, y: torch.Tensor, active: list[int]) -> None:
        batch = self.settings.batch_size
        for _ in range(self.settings.epoch_size):
            permutation = torch.as_tensor(self.rng.permutation(len(x)), device=self.device)
            for start in range(0, len(x), batch):
                index = permutation[start : start + batch]
                xb, yb = x.index_select(0, index), y.index_select(0, index)
                self.optimizer.zero_grad(set_to_none=True)
                loss = sum(F.cross_entropy(F.linear(xb, self.weights[r], self.biases[r]), yb) for r in active)
                loss.backward()
                self.optimizer.step()  # a penalty that stopped has no gradient and is left as it is

    @torch.no_grad()
    def _predicted(self, x: torch.Tensor, which: int) -> torch.Tensor:
        """Argmax in SentEval's scoring batches (a near-tie could flip with another matmul blocking)."""
        w, b, batch = self.weights[which], self.biases[which], self.settings.batch_size
        return torch.cat([F.linear(x[i : i + batch], w, b).argmax(1) for i in range(0, len(x), batch)])

    def _accuracies(self, x: torch.Tensor, y: torch.Tensor) -> list[float]:
        return [float((self._predicted(x, r) == y).sum()) / len(x) for r in range(len(self.weights))]

    def predict(self, x: np.ndarray, which: int = 0) -> np.ndarray:
        return self._predicted(self._tensors(x, np.zeros(len(x)))[0], which).cpu().numpy()

    def score(self, x: np.ndarray, y: np.ndarray, which: int = 0) -> float:
        return float(np.mean(self.predict(x, which) == np.asarray(y)))


def _scan(
    train: tuple, held_out: tuple, n_classes: int, settings: Settings, seed: int, device
) -> list[float]:
    """Every penalty fit on ``train``, early-stopped on ``held_out`` and scored there."""
    scan = LogisticRegressionScan(train[0].shape[1], n_classes, L2_REGS, settings, seed, device)
    scan.fit(*train, validation=held_out)
    return [scan.score(*held_out, which=r) for r in range(len(L2_REGS))]


def _refit(train: tuple, n_classes: int, l2reg: float, settings: Settings, seed: int, device,
           validation: tuple | None = None) -> LogisticRegressionScan:  # fmt: skip
    model = LogisticRegressionScan(train[0].shape[1], n_classes, [l2reg], settings, seed, device)
    model.fit(*train, validation=validation)
    return model


def inner_kfold_protocol(x: np.ndarray, y: np.ndarray, n_classes: int, settings: Settings, seed: int,
                         device: torch.device) -> dict:  # fmt: skip
    """SentEval's InnerKFoldClassifier (MR, CR, SUBJ, MPQA)."""
    outer = StratifiedKFold(n_splits=settings.kfold, shuffle=True, random_state=INNER_KFOLD_RANDOM_STATE)
    inner = StratifiedKFold(n_splits=settings.kfold, shuffle=True, random_state=INNER_KFOLD_RANDOM_STATE)
    dev_scores, test_scores, chosen = [], [], []
    for train, test in outer.split(x, y):
        xt, yt = x[train], y[train]
        per_fold = [
            _scan((xt[a], yt[a]), (xt[b], yt[b]), n_classes, settings, seed, device)
            for a, b in inner.split(xt, yt)
        ]
        scores = [round(100 * float(np.mean(column)), 2) for column in zip(*per_fold)]
        best = int(np.argmax(scores))
        model = _refit((xt, yt), n_classes, L2_REGS[best], settings, seed, device)
        dev_scores.append(scores[best])
        test_scores.append(round(100 * model.score(x[test], y[test]), 2))
        chosen.append(L2_REGS[best])
    return {"acc": round(float(np.mean(test_scores)), 2), "devacc": round(float(np.mean(dev_scores)), 2),
            "n": len(y), "ndev": len(y), "ntest": len(y), "l2reg": chosen}  # fmt: skip


def kfold_protocol(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], n_classes: int,
                   settings: Settings, seed: int, device: torch.device) -> tuple[dict, np.ndarray]:  # fmt: skip
    """SentEval's KFoldClassifier (TREC, MRPC); also returns the test predictions."""
    folds = StratifiedKFold(n_splits=settings.kfold, shuffle=True, random_state=seed)
    x, y = train
    per_fold = [
        _scan((x[a], y[a]), (x[b], y[b]), n_classes, settings, seed, device) for a, b in folds.split(x, y)
    ]
    scores = [round(100 * float(np.mean(column)), 2) for column in zip(*per_fold)]
    best = int(np.argmax(scores))
    model = _refit(train, n_classes, L2_REGS[best], settings, seed, device)
    predicted = model.predict(test[0])
    result = {"acc": round(100 * float(np.mean(predicted == test[1])), 2), "devacc": scores[best],
              "n": len(test[1]), "ndev": len(y), "ntest": len(test[1]), "l2reg": L2_REGS[best]}  # fmt: skip
    return result, predicted


def split_protocol(train: tuple, dev: tuple, test: tuple, n_classes: int, settings: Settings, seed: int,
                   device: torch.device) -> dict:  # fmt: skip
    """SentEval's SplitClassifier (SST2): the penalty chosen on dev, then refit (with the same seed, so the
    same fit) and scored on test."""
    scores = [round(100 * s, 2) for s in _scan(train, dev, n_classes, settings, seed, device)]
    best = int(np.argmax(scores))
    model = _refit(train, n_classes, L2_REGS[best], settings, seed, device, validation=dev)
    return {"acc": round(100 * model.score(*test), 2), "devacc": scores[best], "n": len(test[1]),
            "ndev": len(dev[1]), "ntest": len(test[1]), "l2reg": L2_REGS[best]}  # fmt: skip


@contextlib.contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """The fits are many tiny steps: on the CPU, intra-op threads only add overhead, and on shared cores a
    lot of it (measured: 60 s with the default threads vs 1 s with one, for one scan of a 900 x 384 problem
    while another process ran)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """SentEval ran its classifier on the GPU; here the GPU when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
