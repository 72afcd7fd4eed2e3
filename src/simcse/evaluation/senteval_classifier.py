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

Why it is fast: each classifier re-seeds NumPy and torch with ``seed`` when it is built, so every fit
starts from the same weights and draws its batch order from its own fresh stream: the fits of a protocol
are independent of one another. They therefore all run side by side (:func:`run_scans`): one batched
model holds the parameters and optimizer state of every fit of every fold and penalty (10 x 10 x 4 = 400 in
InnerKFold's test mode), each fit takes its own next batch at every step and stops on its own, and a
finished fold leaves the batch. That gives each fit's SentEval trajectory up to float rounding, in about as
many steps as one fit instead of hundreds of fits one after another. The gradient of the mean
cross-entropy and the optimizer updates (torch's single-tensor Adam and RMSprop, written out so that a
stopped fit keeps its state) are computed directly. Nothing here touches the global random state: NumPy's
streams are ``RandomState(seed)`` objects, torch's init runs inside ``torch.random.fork_rng``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

L2_REGS = tuple(10.0**t for t in range(-5, -1))
VALIDATION_SPLIT = 0.05
INNER_KFOLD_RANDOM_STATE = 1111  # hard-coded in SentEval's InnerKFoldClassifier
# torch's defaults, which SentEval's get_optimizer("adam") / ("rmsprop") keep
ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
RMSPROP = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8}


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


@dataclass(frozen=True)
class Scan:
    """SentEval classifiers on one split, one per penalty (they differ only in weight decay): rows of the
    feature matrix to train on and to early-stop on (None: the first 5% of a permutation of ``train``)."""

    train: np.ndarray
    validation: np.ndarray | None
    l2regs: tuple[float, ...]


@dataclass
class ScanResult:
    """Each penalty's best validation accuracy and the weights that reached it (SentEval's ``bestmodel``)."""

    accuracy: list[float]
    weight: torch.Tensor  # (penalties, classes, dim)
    bias: torch.Tensor  # (penalties, classes)

    @torch.no_grad()
    def predict(self, x: np.ndarray | torch.Tensor, which: int = 0) -> np.ndarray:
        """The predicted class of each row of ``x`` by the classifier of penalty ``which``."""
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32, device=self.weight.device)
        return (x @ self.weight[which].T + self.bias[which]).argmax(1).cpu().numpy()

    def score(self, x: np.ndarray, y: np.ndarray, which: int = 0) -> float:
        """The accuracy of penalty ``which``'s classifier on ``x`` against labels ``y``."""
        return float(np.mean(self.predict(x, which) == np.asarray(y)))


class _Schedule:
    """One scan's data: its split and its batch order, from its own ``RandomState(seed)`` in SentEval's
    order of draws (the validation split first, then one permutation per pass)."""

    def __init__(self, scan: Scan, seed: int, batch_size: int):
        self.rng = np.random.RandomState(seed)
        train = np.asarray(scan.train, dtype=np.int64)
        if scan.validation is None:
            permutation = self.rng.permutation(len(train))
            cut = int(VALIDATION_SPLIT * len(train))
            self.validation, self.train = train[permutation[:cut]], train[permutation[cut:]]
        else:
            self.validation, self.train = np.asarray(scan.validation, dtype=np.int64), train
        if len(self.train) == 0 or len(self.validation) == 0:
            raise ValueError("a SentEval classifier needs training and validation rows")
        self.batch_size = batch_size
        self.batches = math.ceil(len(self.train) / batch_size)
        self.position, self.passes = 0, 0  # passes made: SentEval's nepoch
        self.order = self.train

    def next_batch(self) -> np.ndarray:
        if self.position == 0:
            self.order = self.train[self.rng.permutation(len(self.train))]
        rows = self.order[self.position * self.batch_size : (self.position + 1) * self.batch_size]
        self.position += 1
        if self.position == self.batches:
            self.position, self.passes = 0, self.passes + 1
        return rows


def run_scans(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    scans: Sequence[Scan],
    settings: Settings,
    seed: int,
    device: torch.device,
) -> list[ScanResult]:
    """Every fit of every scan side by side, each exactly as its own SentEval classifier (see module doc)."""
    penalties = {len(s.l2regs) for s in scans}
    if len(penalties) != 1:
        raise ValueError("every scan of a batch needs the same number of penalties")
    features = torch.as_tensor(np.asarray(x), dtype=torch.float32, device=device)
    labels = torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)
    n, r, dim = len(scans), penalties.pop(), features.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # SentEval: torch.manual_seed(seed) in the constructor, then nn.Linear
        init = torch.nn.Linear(dim, n_classes)
    weight = init.weight.detach().to(device).expand(n, r, n_classes, dim).clone()
    bias = init.bias.detach().to(device).expand(n, r, n_classes).clone()
    decay = torch.tensor([s.l2regs for s in scans], dtype=torch.float32, device=device)
    optimizer = _BatchedOptimizer(settings.optim, weight, bias, decay)
    schedules = [_Schedule(s, seed, settings.batch_size) for s in scans]
    validation = [
        (
            features[torch.as_tensor(s.validation, device=device)],
            labels[torch.as_tensor(s.validation, device=device)],
        )
        for s in schedules
    ]
    best = np.full((n, r), -1.0)
    misses = np.zeros((n, r), dtype=np.int64)
    active = np.ones((n, r), dtype=bool)
    best_weight, best_bias = weight.clone(), bias.clone()
    alive = list(range(n))  # the scans in the batch, in the order of the optimizer's rows
    batch = settings.batch_size
    while alive:
        index = np.zeros((len(alive), batch), dtype=np.int64)
        counts = np.zeros(len(alive), dtype=np.int64)
        for row, s in enumerate(alive):
            rows = schedules[s].next_batch()
            index[row, : len(rows)], counts[row] = rows, len(rows)
        index_t = torch.as_tensor(index, device=device)
        counts_t = torch.as_tensor(counts, device=device)
        xb, yb = features[index_t], labels[index_t]
        real = torch.arange(batch, device=device)[None, :] < counts_t[:, None]  # (scans, batch)
        fits = torch.as_tensor(active[alive], device=device)
        optimizer.step(xb, yb, real.float() / counts_t[:, None].float(), fits)

        finished = []
        for row, s in enumerate(alive):
            schedule = schedules[s]
            if schedule.position != 0 or schedule.passes % settings.epoch_size:
                continue
            vx, vy = validation[s]
            with torch.no_grad():
                predicted = (
                    vx[None] @ optimizer.weight[row].transpose(1, 2) + optimizer.bias[row][:, None]
                ).argmax(2)
            accuracies = ((predicted == vy[None]).sum(1).double() / len(vy)).cpu().numpy()
            for p in range(r):
                if not active[s, p]:
                    continue
                if accuracies[p] > best[s, p]:
                    best[s, p] = accuracies[p]
                    best_weight[s, p], best_bias[s, p] = optimizer.weight[row, p], optimizer.bias[row, p]
                else:
                    if misses[s, p] >= settings.tenacity:
                        active[s, p] = False
                    misses[s, p] += 1
            if not active[s].any() or schedule.passes > settings.max_epoch:
                finished.append(row)
        if finished:
            keep = [row for row in range(len(alive)) if row not in finished]
            optimizer.keep(keep)
            alive = [alive[row] for row in keep]
    return [ScanResult([float(a) for a in best[s]], best_weight[s], best_bias[s]) for s in range(n)]


class _BatchedOptimizer:
    """The parameters (scans, penalties, classes, dim) of many logistic regressions and torch's
    single-tensor Adam or RMSprop over them; a fit whose ``active`` flag is off is left as it is, state
    included (as torch skips a parameter without a gradient)."""

    def __init__(self, name: str, weight: torch.Tensor, bias: torch.Tensor, decay: torch.Tensor):
        if name not in ("adam", "rmsprop"):
            raise ValueError(f"unknown SentEval optimizer {name!r}")
        self.name, self.weight, self.bias, self.decay = name, weight, bias, decay
        zeros = [torch.zeros_like(weight), torch.zeros_like(bias)]
        self.state = (
            [zeros, [torch.zeros_like(weight), torch.zeros_like(bias)]] if name == "adam" else [zeros]
        )
        self.steps = torch.zeros(decay.shape, dtype=torch.float64, device=weight.device)

    def keep(self, rows: list[int]) -> None:
        index = torch.as_tensor(rows, dtype=torch.long, device=self.weight.device)
        self.weight, self.bias, self.decay, self.steps = (
            t.index_select(0, index) for t in (self.weight, self.bias, self.decay, self.steps)
        )
        self.state = [[t.index_select(0, index) for t in pair] for pair in self.state]

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor, row_weight: torch.Tensor, active: torch.Tensor) -> None:
        """One step of every active fit on its scan's batch ``x`` (scans, batch, dim): the gradient of the
        mean cross-entropy (``row_weight`` = 1 / batch size on real rows, 0 on padding) plus weight decay."""
        scans, penalties, classes, dim = self.weight.shape
        # the penalties side by side in one product: (scans, batch, dim) x (scans, dim, penalties * classes)
        logits = torch.baddbmm(
            self.bias.view(scans, 1, -1), x, self.weight.view(scans, -1, dim).transpose(1, 2)
        )
        delta = logits.view(scans, -1, penalties, classes).softmax(-1)
        delta.scatter_add_(
            -1, y[:, :, None, None].expand(-1, -1, penalties, 1), -torch.ones_like(delta[..., :1])
        )
        delta *= row_weight[:, :, None, None]
        delta = delta.view(scans, -1, penalties * classes)
        grads = [(delta.transpose(1, 2) @ x).view_as(self.weight), delta.sum(1).view_as(self.bias)]
        params = [self.weight, self.bias]
        per_fit = [(..., None, None), (..., None)]  # a (scans, penalties) value against a weight, a bias
        masks = None if bool(active.all()) else [active[v] for v in per_fit]
        self.steps += active
        if self.name == "adam":
            step = self.steps.clamp(min=1)
            step_size = (ADAM["lr"] / (1 - ADAM["beta1"] ** step)).float()
            bias2_sqrt = (1 - ADAM["beta2"] ** step).sqrt().float()
        for i, (param, grad) in enumerate(zip(params, grads)):
            grad = grad + param * self.decay[per_fit[i]]
            if self.name == "adam":
                exp_avg, exp_avg_sq = self.state[0][i], self.state[1][i]
                new_avg = exp_avg.lerp(grad, 1 - ADAM["beta1"])
                new_sq = exp_avg_sq * ADAM["beta2"] + (1 - ADAM["beta2"]) * grad * grad
                denom = new_sq.sqrt() / bias2_sqrt[per_fit[i]] + ADAM["eps"]
                new_param = param - step_size[per_fit[i]] * new_avg / denom
                self.state[0][i] = _where(masks, i, new_avg, exp_avg)
                self.state[1][i] = _where(masks, i, new_sq, exp_avg_sq)
            else:
                square_avg = self.state[0][i]
                new_sq = square_avg * RMSPROP["alpha"] + (1 - RMSPROP["alpha"]) * grad * grad
                new_param = param - RMSPROP["lr"] * grad / (new_sq.sqrt() + RMSPROP["eps"])
                self.state[0][i] = _where(masks, i, new_sq, square_avg)
            params[i] = _where(masks, i, new_param, param)
        self.weight, self.bias = params


def _where(masks: list[torch.Tensor] | None, i: int, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return new if masks is None else torch.where(masks[i], new, old)


def inner_kfold_protocol(
    x: np.ndarray, y: np.ndarray, n_classes: int, settings: Settings, seed: int, device: torch.device
) -> dict:
    """SentEval's InnerKFoldClassifier (MR, CR, SUBJ, MPQA): the penalty of each outer fold chosen by an
    inner k-fold scan, then a refit on the whole outer training part scored on the outer test fold."""
    outer = StratifiedKFold(n_splits=settings.kfold, shuffle=True, random_state=INNER_KFOLD_RANDOM_STATE)
    inner = StratifiedKFold(n_splits=settings.kfold, shuffle=True, random_state=INNER_KFOLD_RANDOM_STATE)
    folds = list(outer.split(x, y))
    scans = [
        Scan(train[a], train[b], L2_REGS) for train, _ in folds for a, b in inner.split(x[train], y[train])
    ]
    results = run_scans(x, y, n_classes, scans, settings, seed, device)
    k = settings.kfold
    dev_scores, refits = [], []
    for fold in range(len(folds)):
        per_fold = results[fold * k : (fold + 1) * k]
        scores = [
            round(100 * float(np.mean([r.accuracy[p] for r in per_fold])), 2) for p in range(len(L2_REGS))
        ]
        best = int(np.argmax(scores))
        dev_scores.append(scores[best])
        refits.append(Scan(folds[fold][0], None, (L2_REGS[best],)))
    models = run_scans(x, y, n_classes, refits, settings, seed, device)
    test_scores = [round(100 * m.score(x[test], y[test]), 2) for m, (_, test) in zip(models, folds)]
    from simcse.evaluation.classifier import kfold_result

    return kfold_result(test_scores, dev_scores, len(y), [s.l2regs[0] for s in refits])


def kfold_protocol(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    n_classes: int,
    settings: Settings,
    seed: int,
    device: torch.device,
) -> tuple[dict, np.ndarray]:
    """SentEval's KFoldClassifier (TREC, MRPC); also returns the test predictions."""
    x, y = train
    folds = StratifiedKFold(n_splits=settings.kfold, shuffle=True, random_state=seed).split(x, y)
    results = run_scans(x, y, n_classes, [Scan(a, b, L2_REGS) for a, b in folds], settings, seed, device)
    scores = [round(100 * float(np.mean([r.accuracy[p] for r in results])), 2) for p in range(len(L2_REGS))]
    best = int(np.argmax(scores))
    [model] = run_scans(
        x, y, n_classes, [Scan(np.arange(len(y)), None, (L2_REGS[best],))], settings, seed, device
    )
    predicted = model.predict(test[0])
    result = {
        "acc": round(100 * float(np.mean(predicted == test[1])), 2),
        "devacc": scores[best],
        "n": len(test[1]),
        "ndev": len(y),
        "ntest": len(test[1]),
        "l2reg": L2_REGS[best],
    }
    return result, predicted


def split_protocol(
    train: tuple, dev: tuple, test: tuple, n_classes: int, settings: Settings, seed: int, device: torch.device
) -> dict:
    """SentEval's SplitClassifier (SST2): the penalty chosen on dev, then refit on train and scored on test.
    The refit has the scan's seed, data and batch order, so it is the scan's fit at that penalty: its
    weights are taken from the scan."""
    x, y = np.concatenate([train[0], dev[0]]), np.concatenate([train[1], dev[1]])
    rows = np.arange(len(x))
    [scan] = run_scans(
        x, y, n_classes, [Scan(rows[: len(train[1])], rows[len(train[1]) :], L2_REGS)], settings, seed, device
    )
    scores = [round(100 * a, 2) for a in scan.accuracy]
    best = int(np.argmax(scores))
    return {
        "acc": round(100 * scan.score(*test, which=best), 2),
        "devacc": scores[best],
        "n": len(test[1]),
        "ndev": len(dev[1]),
        "ntest": len(test[1]),
        "l2reg": L2_REGS[best],
    }


@contextlib.contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """The fits are many small steps: on the CPU, intra-op threads only add overhead, and on shared cores a
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
