"""Reading option values as YAML and flags give them: ``--key value`` / ``--key=value`` / ``--flag``, the
conversion of each raw value to its field's type, the help table, and one error for every problem found."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from typing import Any

from simcse.core.errors import ConfigError, shorten


def raise_together(problems: list[str], source: str | None = None) -> None:
    """One ConfigError for every problem found: one line, the problems separated by semicolons."""
    if not problems:
        return
    where = f"{source}: " if source else ""
    if len(problems) == 1:
        raise ConfigError(where + problems[0])
    raise ConfigError(f"{where}{len(problems)} problems: " + "; ".join(problems))


def suggest(key: str, keys: list[str]) -> str:
    """A hint naming the closest of ``keys`` to a mistyped ``key`` (``" (did you mean 'KEY'?)"``), else
    ``""``."""
    close = difflib.get_close_matches(key, keys, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # ~1 ms: worth caching, it is asked once per key


def base_type(cls: type, name: str) -> type:
    """The type a value of field ``name`` converts to (``str`` for ``str | None``, ``list`` for ``list[str]``)."""
    hint = _type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and args:
        return args[0]
    return typing.get_origin(hint) or hint


def nullable(cls: type, name: str) -> bool:
    """Whether the field takes None (``null`` / ``none`` in YAML and on the command line)."""
    return type(None) in typing.get_args(_type_hints(cls)[name])


def coerce(cls: type, key: str, value: Any) -> Any:
    """``value`` (from YAML or a flag) as field ``key`` of ``cls`` takes it; a ConfigError says why not."""
    reader = cls.__dataclass_fields__[key].metadata.get("coerce")
    if reader is not None:
        value = reader(value)
    target = base_type(cls, key)
    if value is None:
        if nullable(cls, key):
            return None
        raise ConfigError(f"{key} needs a value")
    if isinstance(value, str) and nullable(cls, key) and value.lower() in ("", "none", "null"):
        return None
    try:
        return _converted(value, target)
    except (TypeError, ValueError, OverflowError) as e:
        raise ConfigError(f"{key} must be {target.__name__}, got {shorten(repr(value), 80)}") from e


def _converted(value: Any, target: type) -> Any:
    if target is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError
    if target is int:
        if isinstance(value, str) and "e" in value.lower():
            value = float(value)  # 1e3; inf, nan and 1.5e0 are refused below
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    if target is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if target is str:
        if not isinstance(value, (str, int, float)):  # lists, mappings, !!binary, !!set, ...
            raise ValueError
        if "\x00" in str(value):
            raise ValueError
        return str(value)
    return value


def parse_flags(cls: type, args: list[str]) -> dict[str, Any]:
    """``--key value`` / ``--key=value`` / ``--flag`` (boolean true) into raw values (strings)."""
    names = [f.name for f in dataclasses.fields(cls)]
    bools = {name for name in names if base_type(cls, name) is bool}
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(
                f"unexpected argument {shorten(repr(arg), 80)}; options are written --key value"
            )
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in names:
            raise ConfigError(f"unknown option --{shorten(key, 80)}{suggest(key, names)}")
        if not eq:
            nxt = args[i + 1] if i + 1 < len(args) else None
            if key in bools and (nxt is None or nxt.startswith("--")):
                value = "true"
            elif nxt is None or nxt.startswith("--"):
                raise ConfigError(f"option --{key} needs a value")
            else:
                value = nxt
                i += 1
        values[key] = value
        i += 1
    return values


def option_help(cls: type) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(group, [(key, default, help)]) for ``simcse train --help``, from the fields' metadata."""
    groups: dict[str, list[tuple[str, str, str]]] = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        groups.setdefault(f.metadata["group"], []).append((f.name, shown(default), f.metadata["help"]))
    return list(groups.items())


def shown(default: Any) -> str:
    """A default as ``--help`` writes it."""
    if default is None or default == []:
        return "none"
    if isinstance(default, list):
        return ",".join(default)
    if default == "":
        return '""'
    return str(default).lower() if isinstance(default, bool) else str(default)
