"""The ``simcse`` command: argument parsing only; each subcommand is a module of this package with
``add_parser(sub)`` and ``run(args)``, and ``run`` calls the library.

Errors caused by input (config, data, model, network) print one line and exit with status 2. Nothing here
imports torch before a command runs, so ``simcse --help`` is fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from simcse.cli import (
    analyze,
    baselines,
    data,
    encode,
    experiment,
    export,
    index,
    plot,
    push,
    recipes,
    search,
    serve,
    similarity,
    train,
)
from simcse.cli import eval as eval_command
from simcse.core.errors import SimCSEError

SUBCOMMANDS = (
    train,
    eval_command,
    experiment,
    plot,
    analyze,
    baselines,
    data,
    similarity,
    encode,
    index,
    search,
    export,
    push,
    recipes,
)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's default in ``--help``, unless its help already states it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not text
            or "default" in text.lower()
            or default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with the package's error discipline: a usage error is one line, ``simcse: error: ...``
    naming the command, and exit status 2 (argparse's default prints the usage block first). Subcommand
    parsers are of this class too, and show every default in ``--help``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """Exit with status 2 and one line: ``simcse: error: PROG: MESSAGE (see PROG --help)``."""
        self.exit(2, f"simcse: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(serve_options: bool = False) -> argparse.ArgumentParser:
    """The argument parser; ``serve_options`` imports :mod:`simcse.serve` for the ``serve`` options."""
    from simcse.core.version import __version__

    parser = Parser(
        prog="simcse", description="Train, evaluate and use SimCSE sentence embeddings.", allow_abbrev=False
    )
    parser.add_argument("--version", action="version", version=f"simcse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    serve.add_parser(sub, serve_options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``simcse`` command on ``argv`` (None: ``sys.argv[1:]``) and return its exit status: the
    subcommand's, 2 for a usage error or a :class:`~simcse.core.errors.SimCSEError` (printed as one line, no
    traceback), 130 on Ctrl-C, 141 when the reader of stdout went away. ``train`` is parsed by
    :func:`simcse.cli.train.parse`, since its flags are TrainConfig's keys."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(serve_options=argv[:1] == ["serve"])
    if argv[:1] == ["train"] and not {"-h", "--help"} & set(argv):
        args = train.parse(argv[1:])
    elif argv[:1] == ["serve"]:
        args, rest = parser.parse_known_args(argv)
        if rest and not getattr(args, "serve_unavailable", None):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    else:
        args, rest = parser.parse_known_args(argv)
        # a list positional (``similarity [MODEL] A B``) may continue after options: argparse leaves those
        # words over, and they belong to it
        intermixed = getattr(args, "intermixed", None)
        if rest and intermixed and not any(word.startswith("-") for word in rest):
            getattr(args, intermixed).extend(rest)
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.func(args)
    except SimCSEError as e:
        message = " ".join(str(e).split("\n"))  # one line, whatever the message (hub errors span lines)
        print(f"simcse: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simcse: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader stopped early (``simcse recipes | head -1``): quiet, as a shell tool killed by SIGPIPE is;
        # stdout goes to devnull so that the interpreter's final flush cannot raise the same error again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
