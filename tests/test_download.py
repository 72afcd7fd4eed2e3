"""Tests for simcse.download against a threaded HTTP server on 127.0.0.1; nothing reaches the real network."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from simcse import download as dl
from simcse import http_fetch
from simcse.errors import MissingDataError, SimCSEError

WIKI = "/wiki1m_for_simcse.txt"
NLI = "/nli_for_simcse.csv"
SENTEVAL = "/senteval.tar"


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    cuts: int = 0  # the next `cuts` answers announce the full length but stop after `cut_at` bytes
    cut_at: int = 0
    ignore_range: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # extra headers, e.g. X-Linked-Etag
    redirect_to: str | None = None


class FakeServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def gets(self, path: str) -> list[str | None]:
        """The Range headers of the GET requests for ``path``."""
        return [rng for method, p, rng in self.log if method == "GET" and p == path]


def _make_handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            server.log.append(("HEAD", self.path, self.headers.get("Range")))
            route = server.routes.get(self.path)
            self.send_response(200 if route is not None else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            server.log.append(("GET", self.path, self.headers.get("Range")))
            route = server.routes.get(self.path)
            if route is None or route.status != 200:
                self.send_error(404 if route is None else route.status)
                return
            if route.redirect_to is not None:
                self.send_response(302)
                self.send_header("Location", route.redirect_to)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send_body(route)

        def _send_body(self, route: Route) -> None:
            body, start = route.body, 0
            rng = self.headers.get("Range")
            if rng and not route.ignore_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.end_headers()
            payload = body[start:]
            if route.cuts > 0:
                route.cuts -= 1
                payload = payload[: route.cut_at]
            self.wfile.write(payload)
            self.wfile.flush()
            self.close_connection = True

    return Handler


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Refuse any connection that is not to 127.0.0.1, and keep the defaults away from huggingface.co."""
    real = socket.create_connection

    def guarded(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert address[0] in ("127.0.0.1", "localhost"), f"test tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    monkeypatch.setenv("SIMCSE_DATA_URL", f"http://127.0.0.1:{_closed_port()}/nowhere")
    monkeypatch.setenv("SIMCSE_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setattr(http_fetch, "RETRY_DELAY_S", 0.0)
    monkeypatch.setattr(http_fetch, "PROBE_TIMEOUT_S", 2.0)
    monkeypatch.setattr(http_fetch, "TIMEOUT_S", 5.0)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _payload(n: int = 300_000) -> bytes:
    return random.Random(n).randbytes(n)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar(entries: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """A tar of (name, file content or None for a directory, symlink target or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content, link in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


SENTEVAL_TAR = [
    ("downstream", None, None),
    ("downstream/STS", None, None),
    ("downstream/STS/STSBenchmark", None, None),
    ("downstream/STS/STSBenchmark/sts-test.csv", b"a\tb\t5.0\n", None),
    ("downstream/MR/rt-polarity.pos", b"good film\n", None),
]


# ----------------------------------------------------------------------------------------------------------
# Paths


def test_resolve_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SIMCSE_DATA_DIR", "~/from-env")
    assert dl.resolve_data_dir("~/explicit") == tmp_path / "home" / "explicit"
    assert dl.resolve_data_dir(tmp_path / "x") == tmp_path / "x"
    assert dl.resolve_data_dir() == tmp_path / "home" / "from-env"
    monkeypatch.delenv("SIMCSE_DATA_DIR")
    assert dl.resolve_data_dir() == tmp_path / "home" / ".cache" / "simcse" / "data"
    assert not (tmp_path / "home").exists()  # never created


def test_dataset_paths_urls_and_fetch_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert dl.dataset_path("senteval", tmp_path) == tmp_path / "senteval" / "downstream"
    assert dl.dataset_path("wiki1m", tmp_path) == tmp_path / "wiki" / "wiki1m_for_simcse.txt"
    assert dl.dataset_path("nli", tmp_path) == tmp_path / "nli" / "nli_for_simcse.csv"
    assert dl.fetch_command("senteval", Path("/x")) == "simcse data download senteval --dir /x"
    assert dl.fetch_command("nli") == "simcse data download nli"
    assert dl.fetch_command("wiki1m", Path("/a b")) == "simcse data download wiki1m --dir '/a b'"
    assert dl.dataset_url("nli", "http://mirror/base/") == "http://mirror/base/nli_for_simcse.csv"
    monkeypatch.setenv("SIMCSE_DATA_URL", "http://env-mirror")
    assert dl.dataset_url("senteval") == "http://env-mirror/senteval.tar"
    monkeypatch.delenv("SIMCSE_DATA_URL")
    assert dl.dataset_url("wiki1m").startswith(
        "https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main/"
    )
    with pytest.raises(SimCSEError, match="unknown dataset 'sts'"):
        dl.dataset_path("sts", tmp_path)


# ----------------------------------------------------------------------------------------------------------
# Plain files


def test_full_download(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    server.routes[WIKI] = Route(data)
    path = dl.download_dataset("wiki1m", tmp_path, base_url=server.url, progress=False)
    assert path == tmp_path / "wiki" / "wiki1m_for_simcse.txt"
    assert path.read_bytes() == data
    assert not path.with_name(path.name + ".part").exists()
    assert server.gets(WIKI) == [None]
    # Present: no second request.
    assert dl.download_dataset("wiki1m", tmp_path, base_url=server.url, progress=False) == path
    assert len(server.gets(WIKI)) == 1


def test_cut_download_keeps_part_and_next_call_resumes(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_fetch, "ATTEMPTS", 1)
    data = _payload()
    server.routes[NLI] = Route(data, cuts=1, cut_at=100_000, headers={"X-Linked-Etag": f'"{_sha(data)}"'})
    final = tmp_path / "nli" / "nli_for_simcse.csv"
    part = final.with_name(final.name + ".part")
    with pytest.raises(SimCSEError, match="interrupted.*run the command again to resume"):
        dl.download_dataset("nli", tmp_path, base_url=server.url, progress=False)
    assert not final.exists()
    assert part.read_bytes() == data[:100_000]
    dl.download_dataset("nli", tmp_path, base_url=server.url, progress=False)
    assert server.gets(NLI) == [None, "bytes=100000-"]
    assert final.read_bytes() == data
    assert not part.exists()


def test_cut_download_is_resumed_automatically(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    server.routes[NLI] = Route(data, cuts=2, cut_at=70_000)
    path = dl.download_dataset("nli", tmp_path, base_url=server.url, progress=False)
    assert server.gets(NLI) == [None, "bytes=70000-", "bytes=140000-"]
    assert path.read_bytes() == data


def test_server_ignoring_range_restarts_cleanly(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    server.routes[NLI] = Route(data, ignore_range=True)
    part = tmp_path / "nli" / "nli_for_simcse.csv.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from some other file")
    path = dl.download_dataset("nli", tmp_path, base_url=server.url, progress=False)
    assert server.gets(NLI) == [f"bytes={len(b'stale bytes from some other file')}-"]
    assert path.read_bytes() == data


def test_partial_longer_than_remote_restarts(server: FakeServer, tmp_path: Path) -> None:
    data = _payload(1000)
    server.routes[NLI] = Route(data)
    part = tmp_path / "nli" / "nli_for_simcse.csv.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 5000)
    path = dl.download_dataset("nli", tmp_path, base_url=server.url, progress=False)
    assert server.gets(NLI) == ["bytes=5000-", None]  # 416, then from the start
    assert path.read_bytes() == data


@pytest.mark.parametrize("header", ["X-Linked-Etag", "ETag"])
def test_sha256_verified(server: FakeServer, tmp_path: Path, header: str) -> None:
    data = _payload()
    server.routes[WIKI] = Route(data, headers={header: f'"{_sha(data)}"'})
    assert dl.download_dataset("wiki1m", tmp_path, base_url=server.url, progress=False).read_bytes() == data


@pytest.mark.parametrize("header", ["X-Linked-Etag", "ETag"])
def test_checksum_mismatch_removes_partial_and_raises(
    server: FakeServer, tmp_path: Path, header: str
) -> None:
    server.routes[WIKI] = Route(_payload(), headers={header: f'"{_sha(b"something else")}"'})
    with pytest.raises(SimCSEError, match="failed verification: sha256") as info:
        dl.download_dataset("wiki1m", tmp_path, base_url=server.url, progress=False)
    assert "partial file was deleted" in str(info.value)
    assert list((tmp_path / "wiki").iterdir()) == []


def test_etag_that_is_not_a_sha256_is_ignored(server: FakeServer, tmp_path: Path) -> None:
    data = _payload(5000)
    server.routes[WIKI] = Route(
        data, headers={"ETag": '"0123456789abcdef0123456789abcdef01234567"'}
    )  # git sha1
    assert dl.download_dataset("wiki1m", tmp_path, base_url=server.url, progress=False).read_bytes() == data


def test_redirect_followed_with_linked_headers(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    linked = {"X-Linked-Etag": f'"{_sha(data)}"', "X-Linked-Size": str(len(data))}
    server.routes[WIKI] = Route(redirect_to="/cdn/blob", headers=linked)
    server.routes["/cdn/blob"] = Route(data, cuts=1, cut_at=50_000)
    path = dl.download_dataset("wiki1m", tmp_path, base_url=server.url, progress=False)
    assert path.read_bytes() == data
    assert server.gets(WIKI) == [None, "bytes=50000-"]
    assert server.gets("/cdn/blob") == [None, "bytes=50000-"]  # Range survives the redirect


def test_redirect_linked_checksum_mismatch_detected(server: FakeServer, tmp_path: Path) -> None:
    server.routes[WIKI] = Route(redirect_to="/cdn/blob", headers={"X-Linked-Etag": _sha(b"other")})
    server.routes["/cdn/blob"] = Route(_payload())
    with pytest.raises(SimCSEError, match="failed verification"):
        dl.download_dataset("wiki1m", tmp_path, base_url=server.url, progress=False)


@pytest.mark.parametrize("linked_size", [999, 2000])
def test_linked_size_mismatch_detected(server: FakeServer, tmp_path: Path, linked_size: int) -> None:
    server.routes[WIKI] = Route(redirect_to="/cdn/blob", headers={"X-Linked-Size": str(linked_size)})
    server.routes["/cdn/blob"] = Route(_payload(1000))
    with pytest.raises(SimCSEError, match=f"got 1000 bytes, the server announced {linked_size}"):
        dl.download_dataset("wiki1m", tmp_path, base_url=server.url, progress=False)
    assert list((tmp_path / "wiki").iterdir()) == []
    assert len(server.gets("/cdn/blob")) == 1  # a complete body is not retried


@pytest.mark.parametrize(
    ("status", "words"), [(404, "HTTP 404.*not on the server"), (500, "HTTP 500.*server error")]
)
def test_http_errors_are_clear(server: FakeServer, tmp_path: Path, status: int, words: str) -> None:
    if status != 404:
        server.routes[NLI] = Route(status=status)
    with pytest.raises(SimCSEError, match=words) as info:
        dl.download_dataset("nli", tmp_path, base_url=server.url, progress=False)
    assert f"{server.url}{NLI}" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not (tmp_path / "nli").exists()  # nothing created for a failed request


def test_connection_refused_is_clear(tmp_path: Path) -> None:
    with pytest.raises(SimCSEError, match="cannot reach 127.0.0.1"):
        dl.download_dataset("nli", tmp_path, progress=False)


def test_unwritable_destination_is_clear(server: FakeServer, tmp_path: Path) -> None:
    server.routes[NLI] = Route(b"x")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(SimCSEError, match="cannot write"):
        dl.download_dataset("nli", blocker / "data", base_url=server.url, progress=False)


def test_permission_denied_is_clear(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes[NLI] = Route(b"x")

    def denied(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)  # works as root too, unlike chmod
    with pytest.raises(
        SimCSEError, match=r"cannot write .*nli: Permission denied; choose another data directory"
    ):
        dl.download_dataset("nli", tmp_path, base_url=server.url, progress=False)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_destination_is_clear(server: FakeServer, tmp_path: Path) -> None:
    server.routes[NLI] = Route(b"x")
    (tmp_path / "nli").mkdir()
    (tmp_path / "nli").chmod(0o500)
    try:
        with pytest.raises(SimCSEError, match="cannot write.*Permission denied"):
            dl.download_dataset("nli", tmp_path, base_url=server.url, progress=False)
    finally:
        (tmp_path / "nli").chmod(0o700)


def test_force_downloads_again(server: FakeServer, tmp_path: Path) -> None:
    server.routes[NLI] = Route(b"old\n")
    path = dl.download_dataset("nli", tmp_path, base_url=server.url, progress=False)
    server.routes[NLI] = Route(b"new\n")
    assert dl.download_dataset("nli", tmp_path, base_url=server.url, progress=False).read_bytes() == b"old\n"
    dl.download_dataset("nli", tmp_path, base_url=server.url, progress=False, force=True)
    assert path.read_bytes() == b"new\n"


# ----------------------------------------------------------------------------------------------------------
# senteval.tar


def test_senteval_tar_extracted_into_place(server: FakeServer, tmp_path: Path) -> None:
    body = _tar(SENTEVAL_TAR)
    server.routes[SENTEVAL] = Route(body, headers={"X-Linked-Etag": _sha(body)})
    path = dl.download_dataset("senteval", tmp_path, base_url=server.url, progress=False)
    assert path == tmp_path / "senteval" / "downstream"
    assert (path / "STS" / "STSBenchmark" / "sts-test.csv").read_bytes() == b"a\tb\t5.0\n"
    assert (path / "MR" / "rt-polarity.pos").read_bytes() == b"good film\n"
    assert sorted(p.name for p in (tmp_path / "senteval").iterdir()) == ["downstream"]  # no tar, no temp dir


def test_senteval_force_replaces_tree(server: FakeServer, tmp_path: Path) -> None:
    server.routes[SENTEVAL] = Route(_tar(SENTEVAL_TAR))
    path = dl.download_dataset("senteval", tmp_path, base_url=server.url, progress=False)
    server.routes[SENTEVAL] = Route(_tar([("downstream/SICK/SICK_test.txt", b"new\n", None)]))
    dl.download_dataset("senteval", tmp_path, base_url=server.url, progress=False, force=True)
    assert sorted(p.name for p in path.iterdir()) == ["SICK"]
    assert sorted(p.name for p in (tmp_path / "senteval").iterdir()) == ["downstream"]


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ([*SENTEVAL_TAR, ("../evil", b"pwned", None)], "'..'|leaves"),
        ([*SENTEVAL_TAR, ("downstream/../../evil", b"pwned", None)], "'..'|leaves"),
        ([*SENTEVAL_TAR, ("/tmp/simcse-test-evil", b"pwned", None)], "leaves the extraction folder"),
        ([*SENTEVAL_TAR, ("downstream/link", None, "../../../etc/passwd")], "link pointing outside"),
        ([*SENTEVAL_TAR, ("downstream/link", None, "/etc/passwd")], "link pointing outside"),
    ],
)
def test_malicious_tar_refused(server: FakeServer, tmp_path: Path, entries: list, why: str) -> None:
    server.routes[SENTEVAL] = Route(_tar(entries))
    data_dir = tmp_path / "data"
    with pytest.raises(SimCSEError, match=f"refusing to extract member .*({why})"):
        dl.download_dataset("senteval", data_dir, base_url=server.url, progress=False)
    assert list((data_dir / "senteval").iterdir()) == []  # no partial tree, no temp dir, no tar
    assert not (tmp_path / "evil").exists() and not (data_dir / "evil").exists()
    assert not Path("/tmp/simcse-test-evil").exists()


def test_tar_without_downstream_folder_leaves_nothing(server: FakeServer, tmp_path: Path) -> None:
    server.routes[SENTEVAL] = Route(_tar([("data/x.txt", b"x", None)]))
    with pytest.raises(SimCSEError, match="expected a top-level 'downstream/' folder, found: data"):
        dl.download_dataset("senteval", tmp_path, base_url=server.url, progress=False)
    assert list((tmp_path / "senteval").iterdir()) == []


def test_safe_internal_symlink_allowed(server: FakeServer, tmp_path: Path) -> None:
    server.routes[SENTEVAL] = Route(_tar([*SENTEVAL_TAR, ("downstream/MR/alias", None, "rt-polarity.pos")]))
    path = dl.download_dataset("senteval", tmp_path, base_url=server.url, progress=False)
    assert (path / "MR" / "alias").read_bytes() == b"good film\n"


# ----------------------------------------------------------------------------------------------------------
# ensure_dataset and main_download


def test_ensure_dataset_offline_raises_missing_data(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError) as info:
        dl.ensure_dataset("senteval", tmp_path)  # SIMCSE_DATA_URL points at a closed port
    message = str(info.value)
    expected = tmp_path / "senteval" / "downstream"
    assert message.startswith(f"{expected}: not found and the network is unreachable")
    assert f"fetch it with: simcse data download senteval --dir {tmp_path}" in message
    assert info.value.path == str(expected)
    assert not (tmp_path / "senteval").exists()


def test_ensure_dataset_without_download(server: FakeServer, tmp_path: Path) -> None:
    server.routes[NLI] = Route(b"x")
    with pytest.raises(MissingDataError, match="nli_for_simcse.csv: not found; fetch it with"):
        dl.ensure_dataset("nli", tmp_path, download=False, base_url=server.url)
    assert server.log == []


def test_ensure_dataset_present_and_download(server: FakeServer, tmp_path: Path) -> None:
    server.routes[NLI] = Route(b"sent0,sent1,hard_neg\n")
    path = dl.ensure_dataset("nli", tmp_path, base_url=server.url)
    assert path.read_bytes() == b"sent0,sent1,hard_neg\n"
    n_requests = len(server.log)
    assert dl.ensure_dataset("nli", tmp_path, base_url=server.url) == path
    assert len(server.log) == n_requests


def test_ensure_dataset_download_failure_is_missing_data(server: FakeServer, tmp_path: Path) -> None:
    with pytest.raises(
        MissingDataError, match="download failed .*HTTP 404.*fetch it with: simcse data download"
    ):
        dl.ensure_dataset("wiki1m", tmp_path, base_url=server.url)


def test_main_download(server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.routes[WIKI] = Route(b"a sentence\n")
    server.routes[NLI] = Route(b"sent0,sent1,hard_neg\n")
    server.routes[SENTEVAL] = Route(_tar(SENTEVAL_TAR))
    assert dl.main_download(["all"], str(tmp_path), base_url=server.url) == 0
    out = capsys.readouterr().out
    assert f"senteval: {tmp_path / 'senteval' / 'downstream'}" in out
    assert f"wiki1m: {tmp_path / 'wiki' / 'wiki1m_for_simcse.txt'}" in out
    assert dl.main_download(["nli"], str(tmp_path), base_url=server.url) == 0
    assert "(already present)" in capsys.readouterr().out


def test_main_download_errors(server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dl.main_download(["sts"], str(tmp_path), base_url=server.url) == 2
    assert "unknown dataset 'sts'" in capsys.readouterr().err
    server.routes[NLI] = Route(b"x\n")
    assert dl.main_download(["wiki1m", "nli"], str(tmp_path), base_url=server.url) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("simcse: error: wiki1m:") and "HTTP 404" in captured.err
    assert "nli: " in captured.out  # the other dataset still downloaded
