"""Options and argument conventions shared by the subcommands.

Where a subcommand takes a MODEL it is a saved simcse model, a sentence-transformers directory, a Hugging Face
model id or directory, or ``default`` (also ``-``) for the embedded all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simcse.core.precision_options import add_precision_options
from simcse.modeling.names import DEFAULT_MODEL

DEFAULT_MODEL_NAMES = (DEFAULT_MODEL, "-")
MODEL_HELP = (
    "saved simcse model, sentence-transformers dir, HF model id/dir, or 'default' (the embedded model)"
)
BF16_HELP = "encode in bf16"


def positive_int(value: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {number}")
    return number


def model_arg(value: str | None) -> str | None:
    """The model as the library takes it: None for the embedded default."""
    return None if value is None or value in DEFAULT_MODEL_NAMES else value


def local_or_id(value: str | None) -> str | None:
    """An absolute path for a local model (so an index records a path that works from any directory)."""
    model = model_arg(value)
    if model is not None and Path(model).expanduser().is_dir():
        return str(Path(model).expanduser().resolve())
    return model


def say(line: str) -> None:
    """A job's note on stderr (e.g. which precision it runs in and why)."""
    import sys

    print(f"simcse: {line}", file=sys.stderr)


def add_model_options(
    p: argparse.ArgumentParser, batch_size: int | None = None, bf16_help: str | None = None
) -> None:
    """--pooler, plus --batch-size and --precision / --backend for the commands that encode (when given)."""
    if batch_size is not None:
        p.add_argument(
            "--batch-size",
            type=positive_int,
            default=batch_size,
            help="sentences per batch",
        )
    p.add_argument("--pooler", default=None, help="override the pooler")
    if bf16_help is not None:
        add_precision_options(p)


def flags(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options that go to the library unchanged, by name: ``flags(args, "pooler")`` -> ``{"pooler": ...}``."""
    return {name: getattr(args, name) for name in names}
