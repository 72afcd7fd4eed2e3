"""simcse: train, evaluate and use SimCSE sentence embeddings.

The public names load lazily, so ``import simcse`` and ``simcse --help`` do not import torch. This facade
sits above every layer (see ARCHITECTURE.md); nothing inside the package imports it.
"""

from __future__ import annotations

from simcse.core.version import __version__

__all__ = ["Encoder", "SimCSE", "TrainConfig", "__version__", "evaluate", "train"]

_PUBLIC = {
    "Encoder": ("simcse.modeling.encoder", "Encoder"),
    "SimCSE": ("simcse.use.api", "SimCSE"),
    "TrainConfig": ("simcse.training.config", "TrainConfig"),
    "train": ("simcse.training.loop", "train"),
    "evaluate": ("simcse.evaluation.suite", "evaluate"),
}


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'simcse' has no attribute {name!r}")
    import importlib

    module, attribute = _PUBLIC[name]
    return getattr(importlib.import_module(module), attribute)
