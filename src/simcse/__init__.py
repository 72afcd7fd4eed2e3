"""simcse: train, evaluate and use SimCSE sentence embeddings."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Encoder", "SimCSE", "TrainConfig", "__version__", "evaluate", "train"]


def __getattr__(name: str):
    # Lazy imports keep `import simcse` and `simcse --help` fast (torch loads only when needed).
    if name == "Encoder":
        from simcse.encoder import Encoder

        return Encoder
    if name == "SimCSE":
        from simcse.api import SimCSE

        return SimCSE
    if name == "TrainConfig":
        from simcse.config import TrainConfig

        return TrainConfig
    if name == "train":
        from simcse.train import train

        return train
    if name == "evaluate":
        from simcse.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'simcse' has no attribute {name!r}")
