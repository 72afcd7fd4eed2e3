"""Fetching one file over HTTP(S) with the standard library: ``<target>.part`` first, resumed with a
``Range`` request when the server supports it, and renamed to the target only once complete and verified
(size, and sha256 when the server provides it: Hugging Face's LFS ETag or ``X-Linked-ETag``)."""

from __future__ import annotations

import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import IO

from tqdm import tqdm

from simcse.errors import SimCSEError
from simcse.files import sha256_file

TIMEOUT_S = 30.0  # connect and per-read socket timeout for downloads
PROBE_TIMEOUT_S = 5.0  # the quick "is the network reachable" check of ensure_dataset
ATTEMPTS = 3  # an interrupted transfer is resumed this many times in all
RETRY_DELAY_S = 1.0
CHUNK_BYTES = 1 << 20

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def _user_agent() -> str:
    from simcse.version import __version__ as version

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
        hint = "the file is not on the server; check the base URL ($SIMCSE_DATA_URL)"
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


def write_error(path: Path, err: OSError) -> SimCSEError:
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
        raise write_error(part.parent, err) from None
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
                raise write_error(part, err) from None
            written += len(chunk)
            bar.update(len(chunk))
    if end is not None and written < end:
        raise _Interrupted(f"connection closed after {written} of {end} bytes")


def fetch(url: str, target: Path, progress: bool, force: bool) -> None:
    """Download ``url`` to ``target`` through ``target.part``, resuming interrupted transfers."""
    part = _part_path(target)
    if force:
        try:
            part.unlink(missing_ok=True)
        except OSError as err:
            raise write_error(part, err) from None
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
        raise write_error(target, err) from None
