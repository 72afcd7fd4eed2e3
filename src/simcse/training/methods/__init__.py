"""The SimCSE family's methods, one module each: its option fields, its checks, and the pieces it adds to a
run (:class:`~simcse.training.methods.base.Method`). A new method is a new module here, listed in
:data:`METHODS`; rules between two methods are in :mod:`~simcse.training.methods.combinations`.

Every module here is torch-free at import, so that ``simcse train --help`` lists the options quickly."""

from __future__ import annotations

from typing import Any

from simcse.training.methods import (
    ct,
    diffcse,
    esimcse,
    gs_infonce,
    guide,
    mlm,
    promptbert,
    s_simcse,
    simcse_pp,
)
from simcse.training.methods.base import Method

# The order their pieces are built and applied in. The random draws (a fresh head's initialisation, MLM
# masking before DiffCSE's edit, noise before the queue's keys among the extra negatives) follow it, so a
# new order changes what a seed gives.
METHODS: tuple[Method, ...] = (
    ct.METHOD,
    gs_infonce.METHOD,
    esimcse.METHOD,
    simcse_pp.METHOD,
    guide.METHOD,
    s_simcse.METHOD,
    promptbert.METHOD,
    mlm.METHOD,
    diffcse.METHOD,
)


def enabled(config: Any) -> list[Method]:
    """The methods ``config`` uses, in :data:`METHODS` order."""
    return [method for method in METHODS if method.enabled(config)]
