"""Option fields: a dataclass field that carries its help line, its group and its choices, so that one
declaration gives the default, the ``--help`` line, the choice check and the generated reference.

Torch-free and free of any simcse import beyond this layer, so that the training options and the family's
method modules can declare their fields without importing each other.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any


def option(
    default: Any,
    help: str,
    group: str,
    choices: Sequence[str] | None = None,
    coerce: Callable[[Any], Any] | None = None,
) -> Any:
    """A config field: its default, the help line that ``simcse train --help`` prints, its group; for a
    field that takes one of a few names, those names (checked by :func:`choice_problems`); for a value that
    YAML or a flag may write in another shape (a list as a comma string), the function that reads it."""
    metadata = {
        "help": help,
        "group": group,
        "choices": tuple(choices) if choices is not None else None,
        "coerce": coerce,
    }
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def choice_problems(options: Any) -> list[str]:
    """``NAME must be one of A, B, got 'X'`` for every field of ``options`` whose value is not among its
    choices."""
    problems = []
    for f in dataclasses.fields(options):
        choices = f.metadata.get("choices")
        value = getattr(options, f.name)
        if choices is not None and value not in choices:
            problems.append(f"{f.name} must be one of {', '.join(choices)}, got {value!r}")
    return problems


def must_be_positive(options: Any, *names: str) -> list[str]:
    """``NAME must be > 0`` for each of ``names`` that is not a finite number above 0."""
    return [
        f"{name} must be > 0, got {getattr(options, name)}"
        for name in names
        if not (getattr(options, name) > 0 and math.isfinite(getattr(options, name)))
    ]


def must_be_non_negative(options: Any, *names: str) -> list[str]:
    """``NAME must be >= 0`` for each of ``names`` below 0 (or not finite, for a float)."""
    return [
        f"{name} must be >= 0, got {getattr(options, name)}"
        for name in names
        if not (getattr(options, name) >= 0 and math.isfinite(getattr(options, name)))
    ]


def must_be_in_unit_interval(options: Any, name: str, closed_low: bool = True) -> list[str]:
    """``NAME must be in [0, 1)`` (or ``(0, 1)`` with ``closed_low`` False)."""
    value = getattr(options, name)
    inside = (0 <= value < 1) if closed_low else (0 < value < 1)
    return [] if inside else [f"{name} must be in {'[' if closed_low else '('}0, 1), got {value}"]
