"""Evaluation of sentence encoders as in the SimCSE paper: STS, SentEval transfer tasks, geometry."""

from __future__ import annotations

from simcse.evaluation.suite import evaluate, resolve_tasks

__all__ = ["evaluate", "resolve_tasks"]
