"""The training options: :class:`TrainConfig`, made of one dataclass per group of options (a module each,
with its checks) and the family's methods' options; the parsing of YAML and flags.

Torch-free, so that ``simcse train --help`` and grid validation start fast."""

from __future__ import annotations

from typing import Any

from simcse.training.config import parsing
from simcse.training.config.evaluation_options import TRACKERS
from simcse.training.config.train_config import TrainConfig

__all__ = ["TRACKERS", "TrainConfig", "option_help", "parse_flags"]


def parse_flags(args: list[str]) -> dict[str, Any]:
    """``--key value`` / ``--key=value`` / ``--flag`` (boolean true) into raw values of TrainConfig's keys."""
    return parsing.parse_flags(TrainConfig, args)


def option_help() -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(group, [(key, default, help)]) for ``simcse train --help``, from the fields' metadata."""
    return parsing.option_help(TrainConfig)
