"""Old module paths kept working after the modules moved into layer folders: each old path is a
three-line module whose attributes are looked up in the new one, with a DeprecationWarning that names it.
They go in a later release; ARCHITECTURE.md lists them."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def alias(old: str, new: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old`` that returns ``new``'s attribute, warning once per name."""
    warned: set[str] = set()

    def __getattr__(name: str) -> Any:
        value = getattr(importlib.import_module(new), name)
        if name not in warned and not name.startswith("__"):
            warned.add(name)
            warnings.warn(
                f"{old} moved to {new}: import {name} from there ({old} goes in a later release)",
                DeprecationWarning,
                stacklevel=2,
            )
        return value

    return __getattr__
