"""Safe YAML for recipes, flags and grids: plain data only (no ``!!python`` tags), bounded in size and
depth, and every failure one ConfigError naming the file (and the line, for syntax errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from simcse.core.errors import ConfigError, shorten


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's mapping (an empty file: ``{}``) through :func:`safe_load_yaml`; a missing or unreadable
    file, or one that is not a mapping, is a ConfigError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config file not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from e
    values = safe_load_yaml(text, str(path))
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys to values")
    return values


MAX_YAML_NODES = 100_000  # a recipe has ~60 keys; more is an alias bomb ("billion laughs")
MAX_YAML_DEPTH = 50


def safe_load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` (no ``!!python`` tags: nothing is constructed but plain data) that turns every
    failure into a one-line ConfigError naming ``source``: syntax errors (with the line), nesting deep enough
    to exhaust the stack, integers too long to convert, alias bombs and self-referencing aliases."""
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(e, "problem", None) or str(e).strip().splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML ({shorten(str(problem), 200)})") from e
    except RecursionError as e:
        raise ConfigError(f"{source}: invalid YAML (nested too deeply)") from e
    except Exception as e:  # noqa: BLE001 - PyYAML's constructors fail on odd scalars in many ways:
        # ValueError (an integer of 5000 digits), IndexError (``!!float`` of nothing), AttributeError
        # (``!!timestamp`` of a non-date), ...
        raise ConfigError(f"{source}: invalid YAML ({shorten(str(e) or type(e).__name__)})") from e
    check_yaml_size(values, source)
    return values


def check_yaml_size(values: Any, source: str) -> None:
    """Count the nodes ``values`` expands to (shared aliases counted each time they are used, once per
    object thanks to the memo), refusing cycles and more than MAX_YAML_NODES / MAX_YAML_DEPTH."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any, depth: int) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{source}: invalid YAML (nested more than {MAX_YAML_DEPTH} levels deep)")
        key = id(node)
        if key in active:
            raise ConfigError(f"{source}: invalid YAML (an alias refers to its own parent: a cycle)")
        if key not in sizes:
            active.add(key)
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            total = 1
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_YAML_NODES:
                    raise ConfigError(
                        f"{source}: invalid YAML (expands to more than {MAX_YAML_NODES:,} values; "
                        "an alias bomb?)"
                    )
            active.discard(key)
            sizes[key] = total
        return sizes[key]

    size(values, 0)
