"""What produced a number: the command, the CPU, the date and the commit, written beside every results
table so that the documentation's results pages can say where each number came from and a number is never
copied into prose by hand.

A results file (``docs/results/PAGE--NAME.json``) is ``{"title", "about", "provenance", "columns", "rows"}``
for a benchmark, or what ``simcse eval --output`` writes (which carries ``provenance`` too); the site's
generator (``docs/gen_pages.py``) turns each into a stamped table.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from simcse.core.files import write_text_atomic
from simcse.core.hardware import describe_cpu
from simcse.core.version import __version__


def commit() -> str:
    """The checkout's commit (with ``-dirty`` when it has uncommitted changes), or ``release`` when simcse
    runs from an installed wheel, outside any git checkout of it."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return "release"
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "release"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed: ``simcse eval ...`` for the console script, ``python benchmarks/x.py ...``."""
    argv = list(sys.argv if argv is None else argv)
    program = os.path.basename(argv[0]) if argv else "python"
    if program in {"simcse", "__main__.py"} or argv[0].endswith("simcse/cli/__main__.py"):
        head = ["simcse"]
    else:
        head = ["python", os.path.relpath(argv[0]) if os.path.isabs(argv[0]) else argv[0]]
    return shlex.join(head + argv[1:])


def provenance(argv: list[str] | None = None) -> dict[str, str]:
    """The stamp of a results table.

    Args:
        argv: the command line to record; default ``sys.argv``.

    Returns:
        ``command``, ``cpu`` (model, cores and units, as benchmarks print it), ``date`` (UTC, ISO 8601),
        ``commit`` and ``simcse`` (the package version).
    """
    return {
        "command": command_line(argv),
        "cpu": describe_cpu(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "commit": commit(),
        "simcse": __version__,
    }


def write_result(
    path: str | os.PathLike,
    title: str,
    rows: list[dict[str, Any]],
    columns: list[str] | None = None,
    about: str = "",
) -> Path:
    """Write a benchmark's table as a stamped results file (atomically).

    Args:
        path: the JSON file; under ``docs/results/`` it becomes part of the site.
        title: the table's heading.
        rows: one dict per row, values as they are to be shown.
        columns: the column order; default the keys in the order the rows first have them.
        about: one paragraph on what the table measures (settings, budget), shown above it.

    Returns:
        The path written.
    """
    payload = {"title": title, "about": about, "provenance": provenance(), "columns": columns, "rows": rows}
    return write_text_atomic(path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
