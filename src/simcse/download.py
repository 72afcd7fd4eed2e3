"""Download SimCSE's data files from the Hugging Face dataset ``princeton-nlp/datasets-for-simcse``.

The transfer itself is :mod:`simcse.http_fetch`. Downloads go to ``<target>.part`` first and are resumed with a
``Range`` request when the server supports it; the final path appears only once the file is complete and
verified (size, and sha256 when the server provides it). ``senteval.tar`` is checked for unsafe members,
extracted into a temporary sibling folder and renamed into place.

Layout of a data directory::

    $DIR/senteval/downstream/...          senteval.tar extracted into $DIR/senteval/
    $DIR/wiki/wiki1m_for_simcse.txt
    $DIR/nli/nli_for_simcse.csv
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from simcse.errors import ConfigError, MissingDataError, SimCSEError
from simcse.http_fetch import fetch, is_reachable, write_error

DEFAULT_BASE_URL = "https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main"
DATA_URL_ENV = "SIMCSE_DATA_URL"
DATA_DIR_ENV = "SIMCSE_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/simcse/data"


@dataclass(frozen=True)
class RemoteDataset:
    remote_name: str  # file name on the server
    local_path: str  # path inside the data directory, POSIX separators
    is_tar: bool  # extracted into the parent of local_path; its top-level folder is local_path's name


DATASETS: dict[str, RemoteDataset] = {
    "senteval": RemoteDataset("senteval.tar", "senteval/downstream", is_tar=True),
    "wiki1m": RemoteDataset("wiki1m_for_simcse.txt", "wiki/wiki1m_for_simcse.txt", is_tar=False),
    "nli": RemoteDataset("nli_for_simcse.csv", "nli/nli_for_simcse.csv", is_tar=False),
}


# ----------------------------------------------------------------------------------------------------------
# Paths and names


def _spec(name: str) -> RemoteDataset:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise SimCSEError(f"unknown dataset {name!r}; known datasets: {known}") from None


def _default_data_dir() -> Path:
    return Path(DEFAULT_DATA_DIR).expanduser()


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$SIMCSE_DATA_DIR``, else ``~/.cache/simcse/data``.

    ``~`` is expanded; the directory is not created.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    return _default_data_dir()


def dataset_path(name: str, data_dir: str | Path | None = None) -> Path:
    """Where dataset ``name`` lives locally (for senteval: the ``.../senteval/downstream`` folder)."""
    return resolve_data_dir(data_dir) / PurePosixPath(_spec(name).local_path)


def dataset_url(name: str, base_url: str | None = None) -> str:
    """The download URL: ``base_url`` if given, else ``$SIMCSE_DATA_URL``, else the Hugging Face dataset."""
    base = base_url or os.environ.get(DATA_URL_ENV) or DEFAULT_BASE_URL
    if urllib.parse.urlsplit(base).scheme not in ("http", "https", "file"):
        where = "--base-url" if base_url else f"${DATA_URL_ENV}"
        raise ConfigError(f"{where} must be an http://, https:// or file:// URL, got {base!r}")
    return f"{base.rstrip('/')}/{urllib.parse.quote(_spec(name).remote_name)}"


def fetch_command(name: str, data_dir: Path | None = None) -> str:
    """The shell command that downloads dataset ``name``, e.g. ``simcse data download senteval --dir /x``."""
    _spec(name)
    command = f"simcse data download {name}"
    if data_dir is not None:
        command += f" --dir {shlex.quote(str(data_dir))}"
    return command


# ----------------------------------------------------------------------------------------------------------
# Tar extraction


def _is_inside(path: PurePosixPath) -> bool:
    """True if a relative POSIX path stays inside its root once ``..`` parts are applied."""
    depth = 0
    for part in path.parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or re.match(r"^[A-Za-z]:", member.name) or not _is_inside(name):
        return "its path leaves the extraction folder"
    if ".." in name.parts:
        return "its path contains '..'"
    if member.issym():
        link = PurePosixPath(member.linkname)
        if link.is_absolute() or not _is_inside(name.parent / link):
            return f"it is a link pointing outside the archive ({member.linkname})"
    elif member.islnk():
        link = PurePosixPath(member.linkname)
        if link.is_absolute() or not _is_inside(link):
            return f"it is a link pointing outside the archive ({member.linkname})"
    elif not (member.isfile() or member.isdir()):
        return "it is a device, fifo or other special file"
    return None


def _check_members(tar: tarfile.TarFile, tar_path: Path) -> None:
    links: set[PurePosixPath] = set()
    for member in tar.getmembers():
        reason = _unsafe_reason(member)
        name = PurePosixPath(member.name)
        if reason is None and any(parent in links for parent in name.parents):
            # a chain of links (up -> .., up/up2 -> ..) escapes even when each link looks local
            reason = (
                "its path goes through a link of the archive, which may point outside the extraction folder"
            )
        if member.issym() or member.islnk():
            links.add(name)
        if reason is not None:
            raise SimCSEError(f"{tar_path}: refusing to extract member {member.name!r}: {reason}")


def _extract_tar(tar_path: Path, final: Path) -> None:
    """Extract ``tar_path`` into ``final.parent`` so that its top-level ``final.name`` folder becomes ``final``.

    Extraction happens in a temporary sibling folder that is renamed into place, so ``final`` only ever
    appears complete. The tar is deleted afterwards (also when it is refused as unsafe).
    """
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-extract-", dir=final.parent))
    except OSError as err:
        raise write_error(final.parent, err) from None
    try:
        try:
            with tarfile.open(tar_path) as tar:
                _check_members(tar, tar_path)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: a second line of defence
                    tar.extractall(tmp, filter="data")
                else:
                    tar.extractall(tmp)
        except getattr(tarfile, "FilterError", ()) as err:  # the "data" filter's refusal
            raise SimCSEError(f"{tar_path}: refusing to extract member: {err}") from None
        except (tarfile.TarError, EOFError) as err:
            raise SimCSEError(f"{tar_path}: not a valid tar archive ({err}); run the command again") from None
        except OSError as err:
            raise write_error(tmp, err) from None
        extracted = tmp / final.name
        if not extracted.is_dir():
            found = ", ".join(sorted(p.name for p in tmp.iterdir())) or "nothing"
            raise SimCSEError(f"{tar_path}: expected a top-level '{final.name}/' folder, found: {found}")
        _replace_dir(extracted, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        tar_path.unlink(missing_ok=True)


def _replace_dir(source: Path, final: Path) -> None:
    """Rename ``source`` to ``final``; an existing ``final`` (``--force``) is moved aside first."""
    old = None
    try:
        if final.exists():
            old = final.with_name(f".{final.name}-old-{os.getpid()}")
            os.replace(final, old)
        os.replace(source, final)
    except OSError as err:
        raise write_error(final, err) from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------
# Public entry points


def download_dataset(
    name: str,
    data_dir: str | Path | None = None,
    base_url: str | None = None,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Download dataset ``name`` into the data directory unless present (or ``force``); returns its path."""
    spec = _spec(name)
    final = dataset_path(name, data_dir)
    if final.exists() and not force:
        return final
    url = dataset_url(name, base_url)
    if not spec.is_tar:
        fetch(url, final, progress, force)
        return final
    tar_path = final.parent / spec.remote_name
    # A complete tar left by an interrupted extraction is reused; --force fetches it again.
    if force or not tar_path.exists():
        fetch(url, tar_path, progress, force)
    _extract_tar(tar_path, final)
    return final


def ensure_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = True,
    base_url: str | None = None,
) -> Path:
    """The local path of dataset ``name``, downloading it if absent, ``download`` is true and the network
    is reachable; otherwise raises MissingDataError naming the expected path and the fetch command."""
    path = dataset_path(name, data_dir)
    if path.exists():
        return path
    root = resolve_data_dir(data_dir)
    command = fetch_command(name, None if root == _default_data_dir() else root)
    if not download:
        raise MissingDataError(path, command)
    url = dataset_url(name, base_url)
    if not is_reachable(url):
        host = urllib.parse.urlsplit(url).netloc
        raise MissingDataError(path, command, reason=f"not found and the network is unreachable ({host})")
    try:
        return download_dataset(name, data_dir, base_url=base_url)
    except SimCSEError as err:
        raise MissingDataError(path, command, reason=f"not found and the download failed ({err})") from None


def main_download(
    names: list[str], data_dir: str | None, base_url: str | None = None, force: bool = False
) -> int:
    """``simcse data download NAME... [--dir DIR] [--force]``: prints where each dataset is; returns the
    exit code: 0 when all are present, 2 when a name is unknown or a download failed (the others are still
    fetched). Errors are ``simcse: error: ...`` lines, as from every command."""
    wanted = list(DATASETS) if "all" in names else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in DATASETS]
    if unknown or not wanted:
        known = ", ".join([*DATASETS, "all"])
        print(
            f"simcse: error: unknown dataset {', '.join(map(repr, unknown)) or '(none given)'}; choose from: {known}",
            file=sys.stderr,
        )
        return 2
    try:
        dataset_url(wanted[0], base_url)  # a malformed --base-url is one error, not one per dataset
    except SimCSEError as err:
        print(f"simcse: error: {err}", file=sys.stderr)
        return 2
    status = 0
    for name in wanted:
        present = dataset_path(name, data_dir).exists() and not force
        try:
            path = download_dataset(name, data_dir, base_url=base_url, force=force)
        except SimCSEError as err:
            print(f"simcse: error: {name}: {' '.join(str(err).split())}", file=sys.stderr)
            status = 2
            continue
        print(f"{name}: {path}" + (" (already present)" if present else ""))
    return status
