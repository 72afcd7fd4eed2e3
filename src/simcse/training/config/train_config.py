"""TrainConfig: every training option in one flat dataclass, made of the option groups of this package and
the options of the family's methods (:mod:`simcse.training.methods`); built from YAML and flags, and
validated up front with every problem reported at once.

A recipe is a YAML file of ``key: value`` pairs; every key is also a command-line flag (``--key value``,
``--key=value``; ``--flag`` alone sets a boolean). Unknown keys and invalid combinations are rejected before
anything is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from simcse.core.errors import ConfigError, shorten
from simcse.core.options import choice_problems
from simcse.core.safe_yaml import check_yaml_size, read_yaml, safe_load_yaml
from simcse.training.config import (
    data_options,
    evaluation_options,
    model_options,
    objective_options,
    optimisation_options,
    performance_options,
)
from simcse.training.config.parsing import coerce, raise_together, suggest
from simcse.training.methods import METHODS, combinations

# the option groups; each module has the group's dataclass and its checks
GROUPS = (
    model_options,
    data_options,
    objective_options,
    optimisation_options,
    evaluation_options,
    performance_options,
)
# the dataclasses whose fields TrainConfig has, in the order of its fields (and of --help's groups)
OPTION_CLASSES = (
    model_options.ModelOptions,
    data_options.DataOptions,
    objective_options.ObjectiveOptions,
    *(method.Options for method in METHODS),
    optimisation_options.OptimisationOptions,
    evaluation_options.EvaluationOptions,
    performance_options.PerformanceOptions,
)


def _mapping(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # from a flag: --extra '{note: baseline}'
        value = safe_load_yaml(value, "extra")
    else:
        check_yaml_size(value, "extra")
    if not isinstance(value, dict):
        raise ConfigError("extra must be a mapping")
    return value


@dataclass
class TrainConfig(*reversed(OPTION_CLASSES)):  # reversed: a dataclass takes the last base's fields first
    """Every training option. ``validate()`` checks the options alone (all problems reported together);
    what depends on the machine and the processes (device, world size, compile backend) is checked when a
    run starts (:func:`simcse.training.setup.resolve`)."""

    extra: dict[str, Any] = dataclasses.field(
        default_factory=dict,
        repr=False,
        metadata={
            "help": "free-form notes kept with the run (a mapping)",
            "group": evaluation_options.GROUP,
            "choices": None,
            "coerce": _mapping,
        },
    )

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        """Every option's name, in field order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """A config from raw values (YAML or flags), each converted to its field's type; every unknown key and
        bad value is reported at once.

        Args:
            values: option name -> raw value (a string from a flag, or YAML's value).
            source: what the values came from, named in the error (a file's path).

        Raises:
            ConfigError: one message listing every problem, with a suggestion for a mistyped key."""
        names = cls.field_names()
        problems, kwargs = [], {}
        for key, value in values.items():
            if key not in names:
                problems.append(
                    f"unknown config key {shorten(repr(key), 80)}{suggest(str(key)[:100], names)}"
                )
                continue
            try:
                kwargs[key] = coerce(cls, key, value)
            except ConfigError as e:
                problems.append(str(e))
        raise_together(problems, source)
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """A config from a YAML file (a recipe) of ``key: value`` pairs, as :meth:`from_dict` reads them.

        Args:
            path: the YAML file."""
        return cls.from_dict(read_yaml(path), source=str(path))

    def override(self, values: dict[str, Any], source: str = "command line") -> TrainConfig:
        """A new config: this one's values with ``values`` on top, converted and checked as :meth:`from_dict`
        does (this one is unchanged).

        Args:
            values: option name -> raw value.
            source: what the values came from, named in the error."""
        merged = {**dataclasses.asdict(self), **values}
        return TrainConfig.from_dict(merged, source=source)

    def to_dict(self) -> dict[str, Any]:
        """Every option as a plain dict (``dataclasses.asdict``)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """Every option as YAML, in field order: a recipe that gives this config back."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # ------------------------------------------------------------------ validation
    def validate(self) -> TrainConfig:
        """Reject bad values and invalid combinations, every one at once, each with what to do: the choices,
        each group's checks, each method's, and the rules between methods. Only the options are looked at:
        nothing here depends on the machine (see the class docstring), except whether each tracker
        ``report_to`` names is installed."""
        problems = choice_problems(self)
        for group in GROUPS:
            problems += group.problems(self)
        for method in METHODS:
            problems += method.problems(self)
        raise_together(problems + combinations.problems(self))
        return self
