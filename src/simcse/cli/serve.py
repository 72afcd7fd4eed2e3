"""``simcse serve``: the HTTP service; its options come from :mod:`simcse.serve`."""

from __future__ import annotations

import argparse

from simcse.core.errors import SimCSEError

SERVE_EXTRA = "pip install 'simcse-toolkit[serve]'"


def add_parser(sub: argparse._SubParsersAction, with_options: bool = False) -> None:
    """The serve options come from :mod:`simcse.serve`, imported only when the command is ``serve`` (so
    other commands and ``simcse --help`` never import it, nor fastapi)."""
    p = sub.add_parser(
        "serve", help="serve encode / similarity / search over HTTP (needs simcse-toolkit[serve])"
    )
    p.set_defaults(func=run)
    add_arguments = None
    if with_options:
        try:
            from simcse import serve

            add_arguments = getattr(serve, "add_arguments", None)
            reason = "simcse.serve has no add_arguments()"
        except ImportError as e:
            reason = str(e)
    if add_arguments is None:
        p.add_argument("serve_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        if with_options:
            p.set_defaults(serve_unavailable=reason)
        return
    add_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Start the service (:func:`simcse.serve.run`); a missing ``serve`` extra is a one-line error naming the
    install command."""
    unavailable = getattr(args, "serve_unavailable", None)
    if unavailable:
        raise SimCSEError(f"simcse serve is unavailable ({unavailable}); {SERVE_EXTRA}")
    from simcse import serve

    try:
        return int(serve.run(args))
    except ImportError as e:
        if (e.name or "").split(".")[0] in ("fastapi", "uvicorn", "starlette", "pydantic", "httpx"):
            raise SimCSEError(f"simcse serve needs {e.name}: {SERVE_EXTRA}") from e
        raise
