"""Deprecated: the old path of :mod:`simcse.training.config` (TrainConfig and its parsing), kept so that code written for simcse 0.1 runs."""

from simcse.core.moved import alias

__getattr__ = alias(__name__, "simcse.training.config")
