"""SentEval's classifier and its three protocols, deterministic: a full-batch L-BFGS logistic regression
(SentEval's objective: mean cross-entropy plus an L2 penalty on the weights), the penalty chosen from
``L2_REGS`` by inner cross-validation (MR, CR, SUBJ, MPQA), by k-fold on train (TREC, MRPC) or on the dev
split (SST-2). See :mod:`simcse.evaluation.transfer` for the tasks and the differences from SentEval."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize
from sklearn.model_selection import StratifiedKFold

L2_REGS = tuple(10.0**t for t in range(-5, -1))

# L-BFGS stopping rule. With gtol and ftol 100x tighter, every number of the 7-task run in mode "test" on
# all-MiniLM-L6-v2 embeddings stayed the same to 2 decimals.
_MAX_ITER = 2000
_GTOL = 1e-6
_FTOL = 1e-10


def fit_penalty_path(
    x: np.ndarray, y: np.ndarray, n_classes: int, l2regs: Sequence[float]
) -> list[np.ndarray]:
    """Fit SentEval's logistic regression once per penalty; the fits come back in the order of ``l2regs``.

    Each fit is a ``(n_classes, dim + 1)`` matrix, bias in the last column. The strongest penalty is fit first
    and warm-starts the next: the objective is strictly convex, so the start changes only the path taken.
    """
    design = np.c_[x, np.ones(len(x))]
    spectrum = np.linalg.eigh(design.T @ design / len(design))
    fits = {}
    params = None
    for l2reg in sorted(l2regs, reverse=True):
        params = _fit_logreg(design, y, n_classes, l2reg, spectrum, init=params)
        fits[l2reg] = params
    return [fits[l2reg] for l2reg in l2regs]


def _fit_logreg(
    design: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    l2reg: float,
    spectrum: tuple[np.ndarray, np.ndarray],
    init: np.ndarray | None,
) -> np.ndarray:
    """Minimise mean softmax cross-entropy + l2reg/2 * ||W||^2 (SentEval's objective) with L-BFGS.

    ``design`` is the features with a column of ones, so ``W`` includes the bias and the bias is penalised.
    ``spectrum`` is ``eigh(design.T @ design / n)``.
    """
    n = len(design)
    onehot = np.eye(n_classes)[y].T
    # L-BFGS runs on V with W = V P, P = (G/2 + l2reg I)^(-1/2), G = design.T @ design / n. The Hessian of the
    # objective is at most G/2 + l2reg I per class, so in V it is well conditioned whatever the scale of the
    # embeddings and the penalty; this takes ~10 gradient evaluations per fit instead of hundreds. The
    # objective, and so the optimum, is the same.
    eigvals, eigvecs = spectrum
    scale = (np.maximum(eigvals, 0.0) / 2 + l2reg) ** -0.5
    precond = (eigvecs * scale) @ eigvecs.T

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        params = theta.reshape(n_classes, -1) @ precond
        logits = params @ design.T
        logits -= logits.max(axis=0)
        log_probs = logits - np.log(np.exp(logits).sum(axis=0))
        loss = -np.sum(log_probs * onehot) / n + 0.5 * l2reg * np.sum(params * params)
        residual = (np.exp(log_probs) - onehot) / n
        grad = (residual @ design + l2reg * params) @ precond
        return float(loss), grad.ravel()

    start = np.zeros((n_classes, design.shape[1])) if init is None else init @ ((eigvecs / scale) @ eigvecs.T)
    options = {"maxiter": _MAX_ITER, "gtol": _GTOL, "ftol": _FTOL}
    result = minimize(loss_and_grad, start.ravel(), jac=True, method="L-BFGS-B", options=options)
    return result.x.reshape(n_classes, -1) @ precond


def _predict(params: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.argmax(x @ params[:, :-1].T + params[:, -1], axis=1)


def _accuracy(params: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(_predict(params, x) == y))


def _cv_scores(x: np.ndarray, y: np.ndarray, n_classes: int, folds: StratifiedKFold) -> list[float]:
    """Mean held-out accuracy of each penalty in L2_REGS over ``folds``, x100 rounded as SentEval does."""
    accuracies = np.zeros((len(L2_REGS), folds.get_n_splits()))
    for fold, (train, held_out) in enumerate(folds.split(x, y)):
        for index, params in enumerate(fit_penalty_path(x[train], y[train], n_classes, L2_REGS)):
            accuracies[index, fold] = _accuracy(params, x[held_out], y[held_out])
    return [round(100 * float(np.mean(row)), 2) for row in accuracies]


def inner_kfold_protocol(x: np.ndarray, y: np.ndarray, n_classes: int, kfold: int, seed: int) -> dict:
    """SentEval's InnerKFoldClassifier (validation.py)."""
    outer = StratifiedKFold(n_splits=kfold, shuffle=True, random_state=seed)
    inner = StratifiedKFold(n_splits=kfold, shuffle=True, random_state=seed)
    dev_scores, test_scores, chosen = [], [], []
    for train, test in outer.split(x, y):
        scores = _cv_scores(x[train], y[train], n_classes, inner)
        best = int(np.argmax(scores))
        params = fit_penalty_path(x[train], y[train], n_classes, [L2_REGS[best]])[0]
        dev_scores.append(scores[best])
        test_scores.append(round(100 * _accuracy(params, x[test], y[test]), 2))
        chosen.append(L2_REGS[best])
    return kfold_result(test_scores, dev_scores, len(y), chosen)


def kfold_protocol(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    n_classes: int,
    kfold: int,
    seed: int,
) -> tuple[dict, np.ndarray]:
    """SentEval's KFoldClassifier (validation.py); also returns the test predictions."""
    folds = StratifiedKFold(n_splits=kfold, shuffle=True, random_state=seed)
    scores = _cv_scores(*train, n_classes, folds)
    best = int(np.argmax(scores))
    params = fit_penalty_path(*train, n_classes, [L2_REGS[best]])[0]
    predicted = _predict(params, test[0])
    result = {
        "acc": round(100 * float(np.mean(predicted == test[1])), 2),
        "devacc": scores[best],
        "n": len(test[1]),
        "ndev": len(train[1]),
        "ntest": len(test[1]),
        "l2reg": L2_REGS[best],
    }
    return result, predicted


def split_protocol(
    train: tuple[np.ndarray, np.ndarray],
    dev: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    n_classes: int,
) -> dict:
    """SentEval's SplitClassifier (validation.py)."""
    fits = fit_penalty_path(*train, n_classes, L2_REGS)
    scores = [round(100 * _accuracy(params, *dev), 2) for params in fits]
    best = int(np.argmax(scores))
    return {
        "acc": round(100 * _accuracy(fits[best], *test), 2),
        "devacc": scores[best],
        "n": len(test[1]),
        "ndev": len(dev[1]),
        "ntest": len(test[1]),
        "l2reg": L2_REGS[best],
    }


def kfold_result(test_scores: list[float], dev_scores: list[float], n: int, penalties: list) -> dict:
    """SentEval's KFold result: the mean test and inner-dev accuracies over the folds, and each fold's
    chosen penalty."""
    return {
        "acc": round(float(np.mean(test_scores)), 2),
        "devacc": round(float(np.mean(dev_scores)), 2),
        "n": n,
        "ndev": n,
        "ntest": n,
        "l2reg": penalties,
    }
