"""``simcse recipes``: the recipes that ship with the package, one line each; each name works wherever a
config file does (``simcse train quickstart``, ``simcse experiment dropout --base unsup-bert-base-uncased``)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse recipes`` to ``sub``."""
    p = sub.add_parser(
        "recipes",
        help="list the training recipes that ship with the package",
        description="Each name works wherever a config file does: simcse train NAME [--key value ...].",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print each shipped recipe's name and its one-line summary."""
    from simcse.training.config.recipes import RECIPES_DIR, builtin_recipes, summary

    names = builtin_recipes()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {summary(RECIPES_DIR / f'{name}.yaml')}")
    return 0
