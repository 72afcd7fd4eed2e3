"""Every ``simcse SUBCOMMAND --option`` the README writes is an option that subcommand has (``train``: a
TrainConfig key; ``experiment``: its own options and, after ``--set``, TrainConfig keys), so the docs and
the parsers cannot drift apart."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from simcse.cli import build_parser
from simcse.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").rglob("*.md"))]
COMMAND = re.compile(r"\bsimcse ([a-z]+)\b([^`\n]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9_-]*)")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


def _options(words: list[str]) -> set[str] | None:
    """The options of ``simcse WORDS...`` (a nested subcommand such as ``data download`` by its first
    words); None when the words name no subcommand."""
    parser = build_parser(serve_options=words[0] == "serve")
    for i, word in enumerate(words):
        children = _subparsers(parser)
        if word not in children:
            return set(parser._option_string_actions) if i else None
        parser = children[word]
    return set(parser._option_string_actions)


def uses() -> list[tuple[str, str, str]]:
    """(where, command, option) for every option written after ``simcse COMMAND`` on a line (comments
    after ``#`` and other commands after ``|`` are left out; ``--key`` is the placeholder of any key; a line with
    ``cmd || ...`` shows a mistake on purpose)."""
    found = []
    for path in DOCS:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if " || " in line:  # a mistake shown on purpose, with what follows when it fails
                continue
            for match in COMMAND.finditer(line.split(" # ")[0]):
                sub, rest = match.groups()
                words = [sub, *rest.split()[:1]]
                if _options(words[:1]) is None:
                    continue
                rest = rest.split(" simcse ")[0].split("|")[0]
                command = " ".join(words if _options(words) is not None and len(words) > 1 and words[1] in
                                   _subparsers(_nested(words[0])) else words[:1])  # fmt: skip
                found += [(f"{path.name}:{number}", command, option) for option in OPTION.findall(rest)
                          if option != "--key"]  # fmt: skip
    return found


def _nested(sub: str) -> argparse.ArgumentParser:
    return _subparsers(build_parser(serve_options=sub == "serve"))[sub]


def test_the_docs_name_options_at_all():
    assert len(uses()) > 50


@pytest.mark.parametrize(("where", "sub", "option"), uses(), ids=lambda v: str(v))
def test_every_documented_option_exists(where, sub, option):
    keys = {f"--{k}" for k in TrainConfig.field_names()} | {
        f"--{k.replace('_', '-')}" for k in TrainConfig.field_names()
    }
    known = (
        _options(sub.split())
        | ({"--resume"} | keys if sub == "train" else set())
        | (keys if sub == "experiment" else set())
    )
    assert option in known, f"{where}: simcse {sub} has no option {option}"
