"""Which package each experiment tracker (option ``report_to``) needs, checked without importing it.

So that :meth:`~simcse.training.config.TrainConfig.validate` can refuse a tracker that is not installed
before a run writes anything, without importing the trackers themselves (:mod:`simcse.training.trackers`).
"""

from __future__ import annotations

import importlib.util
import os
import sys

# the modules a tracker imports, and the command that installs them
REQUIREMENTS = {
    "tensorboard": (("tensorboard",), "pip install tensorboard"),
    "wandb": (("wandb",), "pip install wandb"),
    "mlflow": (("mlflow",), "pip install mlflow"),
    "trackio": (("trackio",), "pip install trackio"),
}
# MLflow's own store in the output directory (no MLFLOW_TRACKING_URI) is SQLite, which mlflow-skinny lacks
MLFLOW_LOCAL_STORE = (("sqlalchemy", "alembic"), "pip install sqlalchemy alembic")


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (a module put in ``sys.modules`` counts;
    ``None`` there, which blocks its import, does not)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def missing_package(name: str) -> str | None:
    """Why tracker ``name`` cannot run here (its package is not installed), with the install command; None
    when it can, and for names that are not trackers (``auto``, ``none``)."""
    if name not in REQUIREMENTS:
        return None
    modules, command = REQUIREMENTS[name]
    if not all(map(installed, modules)):
        return f"report_to {name} needs the {modules[0]} package: {command}"
    if name == "mlflow" and not os.environ.get("MLFLOW_TRACKING_URI"):
        modules, command = MLFLOW_LOCAL_STORE
        if not all(map(installed, modules)):
            return (
                f"report_to mlflow without MLFLOW_TRACKING_URI keeps its runs in OUTPUT/mlruns/mlflow.db, "
                f"which needs {' and '.join(modules)}: {command} (or pip install mlflow)"
            )
    return None
