"""The service's limits and options (one dataclass), and their command-line flags."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field

from simcse.core.errors import SimCSEError
from simcse.core.precision_options import add_precision_options
from simcse.modeling.names import EMBEDDED_NAME

API_KEY_ENV = "SIMCSE_API_KEY"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeSettings:
    """Limits of one server. ``queue_size`` counts texts waiting to be encoded (not yet started);
    ``allowed_hosts`` are the accepted ``Host`` header names (``"*"``: any)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch: int = 256
    max_text_chars: int = 10_000
    max_body_bytes: int = 4 * 1024 * 1024
    timeout: float = 30.0
    queue_size: int = 4096
    batch_size: int = 64
    model_name: str | None = None
    compare_name: str | None = None
    allowed_hosts: tuple[str, ...] = field(default_factory=lambda: ("*",))
    log_level: str = "info"

    def validate(self) -> ServeSettings:
        """Raise SimCSEError for the first limit out of range (batch and text sizes, body size, timeout, port,
        a queue smaller than a full request, an empty API key); the settings themselves when all are fine."""
        checks = [
            (self.max_batch >= 1, f"--max-batch must be at least 1, got {self.max_batch}"),
            (self.max_text_chars >= 1, f"--max-text-chars must be at least 1, got {self.max_text_chars}"),
            (
                self.max_body_bytes >= 1024,
                f"--max-body-bytes must be at least 1024, got {self.max_body_bytes}",
            ),
            (self.timeout > 0, f"--timeout must be positive, got {self.timeout}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (0 <= self.port <= 65535, f"--port must be in 0..65535, got {self.port}"),
            (
                self.queue_size >= self.max_batch,
                f"--queue-size ({self.queue_size}) must be at least --max-batch ({self.max_batch}), "
                "or a full-size request could never be queued",
            ),
            (self.api_key is None or self.api_key.strip() != "", "--api-key must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise SimCSEError(message)
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simcse serve`` flags (also used by ``python -m simcse.serve``)."""
    parser.add_argument(
        "model",
        nargs="?",
        default=None,
        help=f"model directory or HF id (default: the embedded {EMBEDDED_NAME})",
    )
    parser.add_argument("--index", metavar="DIR", default=None, help="index directory to search (save_index)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: local connections only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"require this key (Authorization: Bearer KEY or X-API-Key: KEY); default: ${API_KEY_ENV} if set",
    )
    parser.add_argument("--max-batch", type=int, default=256, help="most texts in one request (default 256)")
    parser.add_argument(
        "--max-text-chars", type=int, default=10_000, help="longest text in characters (default 10000)"
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=4 * 1024 * 1024, help="largest request body (default 4 MiB)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per request before 504 (default 30)"
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=4096,
        help="most texts waiting to be encoded; more get 503 with Retry-After (default 4096)",
    )
    parser.add_argument("--pooler", default=None, help="override the model's pooler")
    add_precision_options(parser)
    parser.add_argument(
        "--model-name",
        default=None,
        help="the name clients send as 'model' and get back (default: the model folder's or hub id's last "
        "part); 'simcse' is always accepted too",
    )
    parser.add_argument(
        "--compare",
        metavar="MODEL",
        default=None,
        help="serve a second model beside the first (e.g. the base encoder beside the trained one: 'default' is "
        "the embedded model); requests pick it by 'model', and the demo page shows both; with --index, its own "
        "index of the same sentences is encoded at start",
    )
    parser.add_argument("--compare-name", default=None, help="the second model's name (as --model-name)")
    parser.add_argument("--compare-pooler", default=None, help="override the second model's pooler")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default 64)")
    parser.add_argument(
        "--allowed-hosts",
        default=None,
        help="comma-separated Host header names to accept ('*': any); default: loopback names when "
        "bound to loopback (blocks DNS rebinding), else any",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level",
    )


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """The validated settings of the parsed flags: the API key from ``--api-key``, else the environment; the
    allowed hosts from ``--allowed-hosts``, else the loopback names for a loopback host, else any host."""
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    if args.allowed_hosts:
        hosts = tuple(h.strip().lower() for h in args.allowed_hosts.split(",") if h.strip())
    elif is_loopback(args.host):
        hosts = LOOPBACK_HOSTS
    else:
        hosts = ("*",)
    passed = (
        "host",
        "port",
        "max_batch",
        "max_text_chars",
        "max_body_bytes",
        "timeout",
        "queue_size",
        "batch_size",
        "log_level",
        "model_name",
    )
    return ServeSettings(
        **{name: getattr(args, name) for name in passed},
        api_key=api_key,
        allowed_hosts=hosts,
        compare_name=getattr(args, "compare_name", None),
    ).validate()
