"""Deprecated: the old path of :mod:`simcse.use.index` (the vector indexes), kept so that code written for simcse 0.1 runs."""

from simcse.core.moved import alias

__getattr__ = alias(__name__, "simcse.use.index")
