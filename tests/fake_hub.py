"""A fake Hugging Face Hub on 127.0.0.1 for the tests: the few routes of the Hub's HTTP API that
huggingface_hub (2.x, and 0.24 on) uses to download one file of a repo and to push a folder, kept in memory.

Downloads (``hf_hub_download``): ``HEAD``/``GET /datasets/{repo}/resolve/{revision}/{file}`` answers as the Hub
does for an LFS file: a 302 to a CDN on another host (``localhost`` instead of ``127.0.0.1``) carrying
``X-Repo-Commit`` (a new commit whenever a file changes), ``ETag`` / ``X-Linked-Etag`` (the sha256) and
``X-Linked-Size``; ``GET /cdn/{sha256}`` serves the bytes, with ``Range``, and can cut, shorten or corrupt
them. Pushes (``create_repo`` + ``upload_folder``): ``POST /api/repos/create``,
``/api/models/{repo}/branch/{branch}``, ``/api/validate-yaml``, ``/api/models/{repo}/preupload/{revision}``
(every file ``"regular"``, so no LFS or Xet transfer) and ``/api/models/{repo}/commit/{revision}`` (NDJSON, the
files base64-encoded, stored per branch), and ``GET /api/models/{repo}[/revision/{revision}]``. Every ``/api``
call needs the token; :attr:`FakeHub.fail` makes a route answer an HTTP error. Anything else is a 404, and
every request is in :attr:`FakeHub.log`. :func:`isolate` keeps huggingface_hub's cache, token and endpoint
inside the test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the head of every model repo
REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = {  # route name -> (method, path pattern); the names are the keys of FakeHub.fail
    "resolve": ("GET", rf"/datasets/{REPO}/resolve/(?P<revision>[^/]+)/(?P<file>.+)"),
    "cdn": ("GET", r"/cdn/(?P<sha>[0-9a-f]{64})"),
    "create": ("POST", r"/api/repos/create"),
    "branch": ("POST", rf"/api/models/{REPO}/branch/(?P<revision>[^/]+)"),
    "validate": ("POST", r"/api/validate-yaml"),
    "preupload": ("POST", rf"/api/models/{REPO}/preupload/(?P<revision>[^/]+)"),
    "commit": ("POST", rf"/api/models/{REPO}/commit/(?P<revision>[^/]+)"),
    "info": ("GET", rf"/api/models/{REPO}(?:/revision/(?P<revision>[^/]+))?"),
}


@dataclass
class Commit:
    repo: str
    revision: str
    summary: str
    files: dict[str, bytes]


@dataclass
class FakeHub:
    token: str = "hf_fake_write_token"
    user: str = "tester"  # the token's owner: a repo created without an owner is theirs
    datasets: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo -> file name -> content
    models: dict[str, dict[str, dict[str, bytes]]] = field(default_factory=dict)  # repo -> branch -> files
    private: dict[str, bool] = field(default_factory=dict)  # repo -> created private
    commits: list[Commit] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # route name -> HTTP status answered instead
    cuts: int = 0  # the next `cuts` CDN answers announce the whole body but stop after `cut_at` bytes
    cut_at: int = 0
    tamper: bool = False  # the CDN flips the first byte: same size, other sha256
    short_by: int = 0  # the CDN's body (and its Content-Length) is that many bytes shorter than announced
    plain: bool = False  # resolve answers as a plain file server: the bytes, without the Hub's headers
    log: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range header)
    url: str = ""  # http://127.0.0.1:PORT once running

    def gets(self, route: str) -> list[str | None]:
        """The Range headers of the GET requests that matched ``route`` (``resolve``, ``cdn``)."""
        pattern = ROUTES[route][1]
        return [rng for method, path, rng in self.log if method == "GET" and re.fullmatch(pattern, path)]

    def commit(self, repo: str) -> str:
        """The dataset repo's head: a new commit whenever a file changes, as on the Hub."""
        files = sorted(
            (name, hashlib.sha256(content).hexdigest()) for name, content in self.datasets[repo].items()
        )
        return hashlib.sha1(json.dumps(files).encode()).hexdigest()

    def blob(self, sha: str) -> bytes | None:
        for files in self.datasets.values():
            for content in files.values():
                if hashlib.sha256(content).hexdigest() == sha:
                    return content
        return None


def closed_port_url() -> str:
    """An http:// URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep huggingface_hub inside the test: its cache and token files under ``tmp_path``, no token, online,
    ``$HF_ENDPOINT`` on a closed port (a default never reaches huggingface.co), and a connection to another
    host than 127.0.0.1 / localhost an assertion error (``socket.create_connection``, which httpx uses).
    huggingface_hub reads its settings once, at import, so they are patched in
    :mod:`huggingface_hub.constants` rather than set in the environment."""
    from huggingface_hub import constants, file_download

    home = tmp_path / "hf-home"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(file_download, "HF_HUB_CACHE", str(home / "hub"), raising=False)  # bound there < 1.0
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"), raising=False)
    monkeypatch.setattr(constants, "HF_XET_CACHE", str(home / "xet"), raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(home))  # read by hf_xet (its logs) when its session starts
    monkeypatch.setenv("HF_XET_CACHE", str(home / "xet"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    real = socket.create_connection

    def loopback_only(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert address[0] in ("127.0.0.1", "localhost"), f"test tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", loopback_only)


@contextmanager
def running(hub: FakeHub) -> Iterator[FakeHub]:
    """Serve ``hub`` on 127.0.0.1 (a free port) for the duration of the block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    httpd.daemon_threads = True
    hub.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        httpd.shutdown()
        httpd.server_close()


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._dispatch("HEAD")

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        # ---------------------------------------------------------------------------------- plumbing
        def _dispatch(self, method: str) -> None:
            path = urlsplit(self.path).path
            hub.log.append((method, path, self.headers.get("Range")))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
            for name, (route_method, pattern) in ROUTES.items():
                match = re.fullmatch(pattern, path)
                if match is None or route_method != ("GET" if method == "HEAD" else method):
                    continue
                args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                if name in hub.fail:
                    return self._json(hub.fail[name], {"error": f"injected failure of {name}"})
                if path.startswith("/api/") and self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self._json(401, {"error": "Invalid credentials in Authorization header"})
                return getattr(self, f"_{name}")(method, body, **args)
            self._json(404, {"error": f"no route {method} {path}"})

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, value: object, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(value).encode()
            self._send(status, body, {"Content-Type": "application/json", **(headers or {})})

        def _not_found(self, code: str, message: str) -> None:
            self._json(404, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

        # ---------------------------------------------------------------------------------- downloads
        def _resolve(self, method: str, body: bytes, repo: str, revision: str, file: str) -> None:
            if repo not in hub.datasets:
                return self._not_found("RepoNotFound", "Repository not found")
            content = hub.datasets[repo].get(file)
            if content is None:
                return self._not_found("EntryNotFound", f"{file} does not exist on {revision}")
            if hub.plain:
                return self._send(200, content)
            sha = hashlib.sha256(content).hexdigest()
            port = self.server.server_address[1]
            headers = {
                "Location": f"http://localhost:{port}/cdn/{sha}",  # another host: as the Hub's CDN
                "X-Repo-Commit": hub.commit(repo),
                "ETag": f'"{sha}"',
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(content)),
            }
            self._send(302, b"", headers)

        def _cdn(self, method: str, body: bytes, sha: str) -> None:
            content = hub.blob(sha)
            if content is None:
                return self._send(404)
            if hub.tamper:
                content = bytes([content[0] ^ 0xFF]) + content[1:]
            if hub.short_by:
                content = content[: -hub.short_by]
            start, rng = 0, self.headers.get("Range")
            if rng:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(content):
                    return self._send(416)
            payload = content[start:]
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("ETag", f'"{sha}"')
            self.end_headers()
            if method == "HEAD":
                return
            if hub.cuts > 0:
                hub.cuts -= 1
                payload = payload[: hub.cut_at]
            self.wfile.write(payload)
            self.wfile.flush()
            self.close_connection = True

        # ---------------------------------------------------------------------------------- pushes
        def _create(self, method: str, body: bytes) -> None:
            request = json.loads(body)
            repo = f"{request.get('organization') or hub.user}/{request['name']}"
            url = f"{hub.url}/{repo}"
            if repo in hub.models:
                return self._json(409, {"error": "You already created this model repo", "url": url})
            hub.models[repo] = {"main": {}}
            hub.private[repo] = request.get("visibility") == "private" or request.get("private") is True
            self._json(200, {"url": url, "name": repo, "id": repo})

        def _branch(self, method: str, body: bytes, repo: str, revision: str) -> None:
            if repo not in hub.models:
                return self._not_found("RepoNotFound", "Repository not found")
            if revision in hub.models[repo]:
                return self._json(409, {"error": f"Reference refs/heads/{revision} already exists"})
            hub.models[repo][revision] = dict(hub.models[repo]["main"])
            self._json(200, {})

        def _validate(self, method: str, body: bytes) -> None:
            self._json(200, {"errors": [], "warnings": []})

        def _preupload(self, method: str, body: bytes, repo: str, revision: str) -> None:
            if repo not in hub.models:
                return self._not_found("RepoNotFound", "Repository not found")
            files = json.loads(body)["files"]
            answer = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                for f in files
            ]
            self._json(200, {"files": answer, "commitOid": COMMIT})

        def _commit(self, method: str, body: bytes, repo: str, revision: str) -> None:
            if repo not in hub.models:
                return self._not_found("RepoNotFound", "Repository not found")
            if revision not in hub.models[repo]:
                return self._not_found("RevisionNotFound", f"Invalid rev id: {revision}")
            summary, files = "", {}
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    summary = item["value"]["summary"]
                elif item["key"] == "file" and item["value"]["encoding"] == "base64":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                else:  # lfsFile: the preupload answer said "regular" for every file
                    return self._json(400, {"error": f"unexpected commit operation {item['key']}"})
            hub.models[repo][revision].update(files)
            hub.commits.append(Commit(repo, revision, summary, files))
            oid = hashlib.sha1(body).hexdigest()
            self._json(
                200, {"commitUrl": f"{hub.url}/{repo}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}
            )

        def _info(self, method: str, body: bytes, repo: str, revision: str = "main") -> None:
            if repo not in hub.models:
                return self._not_found("RepoNotFound", "Repository not found")
            self._json(
                200, {"id": repo, "modelId": repo, "sha": COMMIT, "private": hub.private.get(repo, False)}
            )

    return Handler
