"""``simcse serve``: an HTTP service over one loaded model, or two side by side (``--compare``), and
optionally an index.

Endpoints: ``POST /v1/embeddings`` (OpenAI shape), ``POST /similarity``, ``POST /search``, ``GET /health`` and
the demo page at ``GET /``. FastAPI and uvicorn are imported only when the service is used
(``pip install simcse-toolkit[serve]``).
"""

from __future__ import annotations

import argparse
import math
import socket
import sys
from typing import TYPE_CHECKING

from simcse.core.errors import SimCSEError
from simcse.serve.settings import ServeSettings, add_arguments, settings_from_args

if TYPE_CHECKING:
    from fastapi import FastAPI

    from simcse.use.api import SimCSE

__all__ = ["ServeSettings", "add_arguments", "create_app", "run"]


def create_app(model: SimCSE, settings: ServeSettings, compare: SimCSE | None = None) -> FastAPI:
    """The FastAPI app around a loaded model, and ``compare`` beside it (see :mod:`simcse.serve.app`)."""
    from simcse.serve.app import create_app as _create_app

    return _create_app(model, settings, compare)


def _listen_socket(host: str, port: int) -> socket.socket:
    """Bind before the (slow) model load, so a busy port or bad address fails at once with one line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise SimCSEError(f"--host {host}: cannot resolve ({e.strerror})") from e
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise SimCSEError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    """Load the model (and --index) once, then serve until SIGINT/SIGTERM; in-flight requests finish
    (for up to --timeout + 2 s) before the process exits."""
    settings = settings_from_args(args)
    try:
        import uvicorn

        from simcse.serve.app import create_app as _create_app
    except ImportError as e:
        raise SimCSEError(
            f"serving needs FastAPI and uvicorn: pip install 'simcse-toolkit[serve]' ({e})"
        ) from e
    from simcse.use.api import SimCSE

    sock = _listen_socket(settings.host, settings.port)
    try:
        model = SimCSE(
            args.model,
            pooler=args.pooler,
            batch_size=settings.batch_size,
            precision=getattr(args, "precision", "auto"),
            backend=getattr(args, "backend", "torch"),
        ).at_model_limit()  # as every CLI command; requests, the --index queries and --compare's index alike
        if args.index:
            model.load_index(args.index)
        compare = None
        if getattr(args, "compare", None):
            compare = SimCSE(
                args.compare,
                pooler=args.compare_pooler,
                batch_size=settings.batch_size,
                precision=getattr(args, "precision", "auto"),
            ).at_model_limit()
            if model.sentences:
                print(
                    f"simcse serve: encoding the {len(model.sentences)} indexed sentences with {args.compare}",
                    file=sys.stderr,
                    flush=True,
                )
                compare.build_index(list(model.sentences), index="flat")
        app = _create_app(model, settings, compare)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=sock.getsockname()[1],
            log_level=settings.log_level,
            timeout_graceful_shutdown=math.ceil(settings.timeout) + 2,
            server_header=False,
            lifespan="on",
        )
        index = model.vector_index
        index_note = f"index of {len(index)} sentences" if index is not None else "no index"
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        print(
            f"simcse serve: http://{host}:{sock.getsockname()[1]}/ (demo page and API), "
            f"model {app.state.model_name} ({model.dim} dims)"
            + (f" beside {app.state.compare_name} ({compare.dim} dims)" if compare is not None else "")
            + f", {index_note}"
            + (", API key required" if settings.api_key else "")
            + f"; {model.precision_line}",
            file=sys.stderr,
            flush=True,
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
