"""Download SimCSE's data files from the Hugging Face dataset ``princeton-nlp/datasets-for-simcse``.

Only the standard library is used for HTTP. Downloads go to ``<target>.part`` first and are resumed with a
``Range`` request when the server supports it; the final path appears only once the file is complete and
verified (size, and sha256 when the server provides it). ``senteval.tar`` is checked for unsafe members,
extracted into a temporary sibling folder and renamed into place.

Layout of a data directory::

    $DIR/senteval/downstream/...          senteval.tar extracted into $DIR/senteval/
    $DIR/wiki/wiki1m_for_simcse.txt
    $DIR/nli/nli_for_simcse.csv
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import IO

from tqdm import tqdm

from simcse.errors import MissingDataError, SimCSEError
from simcse.files import sha256_file

DEFAULT_BASE_URL = "https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main"
DATA_URL_ENV = "SIMCSE_DATA_URL"
DATA_DIR_ENV = "SIMCSE_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/simcse/data"

TIMEOUT_S = 30.0  # connect and per-read socket timeout for downloads
PROBE_TIMEOUT_S = 5.0  # the quick "is the network reachable" check of ensure_dataset
ATTEMPTS = 3  # an interrupted transfer is resumed this many times in all
RETRY_DELAY_S = 1.0
CHUNK_BYTES = 1 << 20

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


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
    return f"{base.rstrip('/')}/{urllib.parse.quote(_spec(name).remote_name)}"


def fetch_command(name: str, data_dir: Path | None = None) -> str:
    """The shell command that downloads dataset ``name``, e.g. ``simcse data download senteval --dir /x``."""
    _spec(name)
    command = f"simcse data download {name}"
    if data_dir is not None:
        command += f" --dir {shlex.quote(str(data_dir))}"
    return command


# ----------------------------------------------------------------------------------------------------------
# HTTP


def _user_agent() -> str:
    try:
        version = metadata.version("simcse")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"simcse/{version} python-urllib/{sys.version_info.major}.{sys.version_info.minor}"


class _RecordingRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects and keeps the headers of each redirect response.

    The Hugging Face resolve endpoint answers 302 to a CDN; the sha256 and size of an LFS file are in the
    X-Linked-Etag / X-Linked-Size headers of that 302, which urllib would otherwise drop.
    """

    def __init__(self) -> None:
        super().__init__()
        self.redirect_headers: list[Message] = []

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> urllib.request.Request | None:
        self.redirect_headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _NoRedirectHandler(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> urllib.request.Request | None:
        return None  # makes urllib raise HTTPError for the 3xx, which is enough to know the server answered


def _http_error_message(url: str, err: urllib.error.HTTPError) -> str:
    if err.code == 404:
        hint = f"the file is not on the server; check the base URL (${DATA_URL_ENV})"
    elif err.code in (401, 403):
        hint = "access denied by the server"
    elif err.code >= 500:
        hint = "server error; try again later"
    else:
        hint = "unexpected answer from the server"
    return f"download of {url} failed: HTTP {err.code} {err.reason}: {hint}"


def _network_error_message(url: str, err: BaseException) -> str:
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError):
        reason = "timed out"
    host = urllib.parse.urlsplit(url).netloc
    return f"cannot reach {host} to download {url}: {reason}"


def _open(url: str, offset: int) -> tuple[http.client.HTTPResponse, list[Message]]:
    """GET ``url`` from byte ``offset``; returns the response and the headers of the redirects on the way."""
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    redirects = _RecordingRedirectHandler()
    opener = urllib.request.build_opener(redirects)
    request = urllib.request.Request(url, headers=headers)
    response = opener.open(request, timeout=TIMEOUT_S)
    return response, redirects.redirect_headers


def is_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True if the server of ``url`` answers a HEAD request (any HTTP status) within ``timeout`` seconds."""
    opener = urllib.request.build_opener(_NoRedirectHandler())
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": _user_agent()})
    try:
        with opener.open(request, timeout=timeout):
            return True
    except urllib.error.HTTPError as err:
        err.close()
        return True
    except (OSError, http.client.HTTPException, ValueError):
        return False


# ----------------------------------------------------------------------------------------------------------
# Verification data sent by the server


@dataclass(frozen=True)
class _Expected:
    size: int | None
    sha256: str | None


def _as_sha256(etag: str | None) -> str | None:
    if not etag:
        return None
    value = etag.strip()
    value = value.removeprefix("W/").strip('"').lower()
    return value if _SHA256_RE.match(value) else None


def _as_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _expected(
    response: http.client.HTTPResponse, redirects: list[Message], body_total: int | None
) -> _Expected:
    chain = [*redirects, response.headers]
    linked_size = next((s for h in chain if (s := _as_int(h.get("X-Linked-Size"))) is not None), None)
    sha256 = next((s for h in chain if (s := _as_sha256(h.get("X-Linked-Etag")))), None)
    if sha256 is None:
        # Only the first answer's ETag: a CDN's ETag after a redirect may be some other 64-hex hash.
        sha256 = _as_sha256(chain[0].get("ETag"))
    return _Expected(size=linked_size if linked_size is not None else body_total, sha256=sha256)


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """(start, total) from a ``Content-Range: bytes START-END/TOTAL`` header."""
    match = _CONTENT_RANGE_RE.match((value or "").strip())
    if match is None:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _verify(part: Path, url: str, expected: _Expected) -> None:
    size = part.stat().st_size
    if expected.size is not None and size != expected.size:
        part.unlink(missing_ok=True)
        raise SimCSEError(
            f"download of {url} is corrupt: got {size} bytes, the server announced {expected.size}; "
            f"the partial file was deleted, run the command again"
        )
    if expected.sha256 is not None:
        actual = sha256_file(part)
        if actual != expected.sha256:
            part.unlink(missing_ok=True)
            raise SimCSEError(
                f"download of {url} failed verification: sha256 {actual} but the server says "
                f"{expected.sha256}; the partial file was deleted, run the command again"
            )


# ----------------------------------------------------------------------------------------------------------
# One file


class _Interrupted(Exception):
    """The transfer stopped early; what arrived is kept in the .part file for a resume."""


def _part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _write_error(path: Path, err: OSError) -> SimCSEError:
    reason = err.strerror or str(err)
    return SimCSEError(f"cannot write {path}: {reason}; choose another data directory with --dir")


def _transfer(url: str, part: Path, progress: bool) -> _Expected:
    """One request: continue or restart ``part``; returns what the server said the whole file is."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response, redirects = _open(url, offset)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset > 0:  # the partial file is no prefix of the remote one
            part.unlink()
            raise _Interrupted("the server refused to resume; restarting") from None
        raise SimCSEError(_http_error_message(url, err)) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise SimCSEError(_network_error_message(url, err)) from None

    with response:
        if response.status == 206:
            content_range = _content_range(response.headers.get("Content-Range"))
            if content_range is None or content_range[0] != offset:
                part.unlink()
                raise _Interrupted("the server resumed at the wrong offset; restarting")
            body_total = content_range[1]
        else:  # 200: the server ignored the Range header (or none was sent), so start over
            offset = 0
            body_total = _as_int(response.headers.get("Content-Length"))
        expected = _expected(response, redirects, body_total)
        # A body shorter than its own Content-Length is a cut connection (resumable); a complete body that
        # disagrees with X-Linked-Size is a size mismatch that _verify reports.
        body_length = _as_int(response.headers.get("Content-Length"))
        end = offset + body_length if body_length is not None else expected.size
        _stream(response, part, offset, expected.size, end, progress)
    return expected


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    offset: int,
    total: int | None,
    end: int | None,
    progress: bool,
) -> None:
    """Append the body to ``part`` (which holds ``offset`` bytes); ``end`` is its expected size afterwards."""
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
        f = part.open("ab" if offset > 0 else "wb")
    except OSError as err:
        raise _write_error(part.parent, err) from None
    bar = tqdm(
        total=total,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=part.name.removesuffix(".part"),
        disable=not progress,
        leave=False,
    )
    written = offset
    with f, bar:
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as err:
                raise _Interrupted(f"connection lost after {written} bytes: {err}") from None
            if not chunk:
                break
            try:
                f.write(chunk)
            except OSError as err:
                raise _write_error(part, err) from None
            written += len(chunk)
            bar.update(len(chunk))
    if end is not None and written < end:
        raise _Interrupted(f"connection closed after {written} of {end} bytes")


def _fetch(url: str, target: Path, progress: bool, force: bool) -> None:
    """Download ``url`` to ``target`` through ``target.part``, resuming interrupted transfers."""
    part = _part_path(target)
    if force:
        try:
            part.unlink(missing_ok=True)
        except OSError as err:
            raise _write_error(part, err) from None
    for attempt in range(1, ATTEMPTS + 1):
        try:
            expected = _transfer(url, part, progress)
            break
        except _Interrupted as err:
            if attempt == ATTEMPTS:
                kept = f"{part} is kept" if part.exists() else "nothing was kept"
                raise SimCSEError(
                    f"download of {url} interrupted ({err}) after {ATTEMPTS} attempts; "
                    f"{kept}, run the command again to resume"
                ) from None
            time.sleep(RETRY_DELAY_S)
    _verify(part, url, expected)
    try:
        os.replace(part, target)
    except OSError as err:
        raise _write_error(target, err) from None


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
        raise _write_error(final.parent, err) from None
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
            raise _write_error(tmp, err) from None
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
        raise _write_error(final, err) from None
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
        _fetch(url, final, progress, force)
        return final
    tar_path = final.parent / spec.remote_name
    # A complete tar left by an interrupted extraction is reused; --force fetches it again.
    if force or not tar_path.exists():
        _fetch(url, tar_path, progress, force)
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
    exit code (0 all present, 1 a download failed, 2 an unknown name)."""
    wanted = list(DATASETS) if "all" in names else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in DATASETS]
    if unknown or not wanted:
        known = ", ".join([*DATASETS, "all"])
        print(
            f"error: unknown dataset {', '.join(map(repr, unknown)) or '(none given)'}; choose from: {known}",
            file=sys.stderr,
        )
        return 2
    status = 0
    for name in wanted:
        present = dataset_path(name, data_dir).exists() and not force
        try:
            path = download_dataset(name, data_dir, base_url=base_url, force=force)
        except SimCSEError as err:
            print(f"error: {name}: {err}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {path}" + (" (already present)" if present else ""))
    return status
