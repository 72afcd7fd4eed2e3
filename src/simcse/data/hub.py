"""Talking to the Hugging Face Hub: publishing a model directory (``simcse push``), and what the data
downloads of :mod:`simcse.data.download` share with it.

The transfers are huggingface_hub's (``create_repo`` + ``upload_folder``, ``hf_hub_download``); this module
checks what it is given before anything is sent (the directory, the repo id, the endpoint URL) and turns
the Hub's and the HTTP client's errors into one-line :class:`~simcse.core.errors.SimCSEError` messages that name
the endpoint and the repo. huggingface_hub is imported inside the functions, so ``simcse --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from simcse.core.errors import ConfigError, SimCSEError

DEFAULT_ENDPOINT = "https://huggingface.co"
ENDPOINT_ENV = "HF_ENDPOINT"
# Weights that make a directory a model (at its top, or in a sentence-transformers Transformer module's folder).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# What `simcse train` leaves next to the model in its output directory, and temporary files: not published.
IGNORE_PATTERNS = [
    "checkpoints/*",
    "tensorboard/*",
    "wandb/*",  # the trackers' local files (console logs, host, command line, MLflow's database)
    "mlruns/*",
    "trackers.json",
    ".simcse-files",
    "*.tmp",
    "*.tmp/*",
    "*.part",
    "*.partial",
]
_REPO_ID_RE = re.compile(
    r"^(?:(?P<owner>[A-Za-z0-9](?:[\w.-]*\w)?)/)?(?P<name>[A-Za-z0-9](?:[\w.-]*\w)?)$", re.ASCII
)
LOGIN_HINT = (
    "check the token (--token, else $HF_TOKEN, else `hf auth login`): it needs write access to the repo"
)


class HubUnreachableError(SimCSEError):
    """The Hub could not be reached (no network, a wrong endpoint, or offline mode); ``reason`` says which."""

    def __init__(self, what: str, reason: str):
        super().__init__(f"{what}: {reason}")
        self.reason = reason


# ----------------------------------------------------------------------------------------------------------
# Checks made before anything is sent


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The Hub's base URL: ``endpoint`` if given, else ``$HF_ENDPOINT``, else https://huggingface.co, without
    a trailing slash. A ConfigError naming ``--endpoint`` or ``$HF_ENDPOINT`` unless it is an http(s) URL."""
    where = "--endpoint" if endpoint is not None else f"${ENDPOINT_ENV}"
    value = endpoint if endpoint is not None else os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    try:
        parts = urllib.parse.urlsplit(value)
        valid = (
            parts.scheme in ("http", "https") and bool(parts.hostname) and not (parts.query or parts.fragment)
        )
        valid = valid and parts.port != 0  # reading .port checks it: a ValueError unless a number up to 65535
    except ValueError:  # a port that is not a number, an unclosed [IPv6 address, ...
        valid = False
    if not valid:
        raise ConfigError(f"{where} must be an http:// or https:// URL of a Hugging Face Hub, got {value!r}")
    return value.rstrip("/")


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it looks like ``name`` or ``owner/name`` (letters, digits, ``-``, ``_``, ``.``; no ``--``
    or ``..``; a name of at most 96 characters), else a ConfigError."""
    match = _REPO_ID_RE.match(repo_id)
    if (
        match is None
        or "--" in repo_id
        or ".." in repo_id
        or len(match["name"]) > 96
        or repo_id.endswith(".git")
    ):
        raise ConfigError(
            f"repo {repo_id!r} is not a Hugging Face repo id: give NAME or OWNER/NAME (letters, digits, '-', '_' "
            "and '.'; no '--' or '..'; at most 96 characters)"
        )
    return repo_id


def _model_folders(directory: Path) -> list[Path]:
    """The folders that may hold the model's config and weights: the directory itself, and the folders of
    its sentence-transformers Transformer modules (``modules.json``, older layouts: ``0_Transformer/``)."""
    folders = [directory]
    try:
        modules = json.loads((directory / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return folders
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("Transformer"):
            folders.append(directory / str(module.get("path", "")))
    return folders


def check_model_dir(model_dir: str | Path) -> Path:
    """``model_dir`` if it is a model directory (``config.json`` and weights, at its top or in a
    sentence-transformers module folder), else a SimCSEError naming it."""
    directory = Path(model_dir).expanduser()
    if not directory.exists():
        raise SimCSEError(f"{directory}: model directory not found")
    if not directory.is_dir():
        raise SimCSEError(
            f"{directory}: is a file; give a model directory (what simcse train or export wrote)"
        )
    for folder in _model_folders(directory):
        if (folder / "config.json").is_file() and any((folder / name).is_file() for name in WEIGHT_FILES):
            return directory
    raise SimCSEError(
        f"{directory}: not a model directory (no config.json with model.safetensors or pytorch_model.bin); give what "
        "simcse train wrote (once the run has finished) or what simcse export wrote"
    )


# ----------------------------------------------------------------------------------------------------------
# Errors and logging of huggingface_hub


def _connection_errors() -> tuple[type[BaseException], ...]:
    """The HTTP clients' connection errors: httpx's and httpx2's TransportError (huggingface_hub >= 1.0;
    not OSErrors) and requests' ConnectionError (before). Only a client already imported counts."""
    found: list[type[BaseException]] = [ConnectionError]
    for client, name in (
        ("httpx", "TransportError"),
        ("httpx2", "TransportError"),
        ("requests", "ConnectionError"),
    ):
        module = sys.modules.get(client)
        if module is not None:
            found.append(getattr(module, name))
    return tuple(found)


def hub_errors() -> tuple[type[BaseException], ...]:
    """What a huggingface_hub call raises for a network or server problem: OSError (HfHubHTTPError, offline
    mode, a file missing from the cache, a size mismatch) and the HTTP clients' connection errors."""
    return (OSError, *_connection_errors())


def one_line(text: str) -> str:
    """``text`` with every run of whitespace, newlines included, made one space."""
    return " ".join(text.split())


def is_offline(err: BaseException) -> bool:
    """True for huggingface_hub's refusal to connect in offline mode (``HF_HUB_OFFLINE``)."""
    from huggingface_hub.utils import OfflineModeIsEnabled

    return isinstance(err, OfflineModeIsEnabled)


def is_connection_error(err: BaseException) -> bool:
    """True for a connection error of the HTTP clients, not counting offline mode's refusal."""
    return isinstance(err, _connection_errors()) and not is_offline(err)


def describe_error(err: BaseException) -> str:
    """What went wrong, in one line: ``HTTP 401 (the server's message)``, ``offline mode is on ...``,
    ``cannot connect: ...``, or the error's own message."""
    from huggingface_hub.utils import HfHubHTTPError

    if isinstance(err, HfHubHTTPError) and getattr(err, "response", None) is not None:
        message = getattr(err, "server_message", None)
        return f"HTTP {err.response.status_code}" + (f" ({one_line(message)})" if message else "")
    if is_offline(err):
        return "offline mode is on (HF_HUB_OFFLINE is set)"
    text = one_line(str(err)) or type(err).__name__
    return f"cannot connect: {text}" if is_connection_error(err) else text


def http_status(err: BaseException) -> int | None:
    """The HTTP status code of an error that carries a response, else None."""
    status = getattr(getattr(err, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


@contextlib.contextmanager
def quiet_hub(progress: bool = True) -> Iterator[None]:
    """huggingface_hub's log lines off during the block (its retries and fallbacks would print lines around
    the one-line error), and its progress bars too unless ``progress``."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    turn_bars_off = not progress and not are_progress_bars_disabled()
    logger.setLevel(logging.ERROR)
    if turn_bars_off:
        disable_progress_bars()
    try:
        yield
    finally:
        logger.setLevel(level)
        if turn_bars_off:
            enable_progress_bars()


# ----------------------------------------------------------------------------------------------------------
# Publishing


def _check_push_endpoint(base: str) -> None:
    """huggingface_hub < 1.4 reads the URL of a new commit against ``$HF_ENDPOINT`` as it was at import
    (0.24 also validates the README there): a push to another endpoint would fail once uploaded. Refused
    before anything is sent, saying how to push there."""
    from huggingface_hub import __version__, constants
    from packaging.version import Version

    if base != constants.ENDPOINT.rstrip("/") and Version(__version__) < Version("1.4"):
        raise ConfigError(
            f"--endpoint {base}: huggingface_hub {__version__} pushes only to $HF_ENDPOINT "
            f"({constants.ENDPOINT}); run it as HF_ENDPOINT={base} simcse push ..., or upgrade huggingface_hub "
            "to 1.4 or later"
        )


def push_model(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Publish a model directory to the Hub repo ``repo_id`` (``name`` or ``owner/name``; created if missing,
    ``private`` if asked: an existing repo keeps its visibility) in one commit on ``revision`` (a branch,
    created if missing; default: ``main``). Training leftovers (:data:`IGNORE_PATTERNS`) are not uploaded.

    ``token`` defaults to ``$HF_TOKEN``, then the token saved by ``hf auth login``; ``endpoint`` to
    ``$HF_ENDPOINT``, then https://huggingface.co. Returns the URL of the model (of its branch, for a
    ``revision``). Everything is checked before the first request; a failure is one SimCSEError line.
    """
    directory = check_model_dir(model_dir)
    check_repo_id(repo_id)
    if revision is not None and (not revision or revision != revision.strip() or " " in revision):
        raise ConfigError(f"--revision must be a branch name, got {revision!r}")
    base = resolve_endpoint(endpoint)
    _check_push_endpoint(base)
    from huggingface_hub import HfApi

    api = HfApi(endpoint=base, token=token)
    what = f"pushing {directory} to {repo_id} at {base}"
    try:
        with quiet_hub():
            repo_url = api.create_repo(repo_id, private=True if private else None, exist_ok=True)
            if revision is not None and revision != "main":
                api.create_branch(repo_url.repo_id, branch=revision, exist_ok=True)
            api.upload_folder(
                repo_id=repo_url.repo_id,
                folder_path=directory,
                revision=revision,
                commit_message=commit_message or f"Upload {directory.name} with simcse push",
                ignore_patterns=list(IGNORE_PATTERNS),
            )
    except hub_errors() as err:
        hint = f"; {LOGIN_HINT}" if http_status(err) in (401, 403) else ""
        raise SimCSEError(f"{what} failed: {describe_error(err)}{hint}") from None
    except ValueError as err:  # e.g. the README's metadata block, refused by the Hub's validation
        raise SimCSEError(f"{what} failed: {one_line(str(err))}") from None
    return f"{repo_url}/tree/{revision}" if revision is not None else str(repo_url)
