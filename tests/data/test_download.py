"""Tests for simcse.data.download against the fake Hub of tests/fake_hub.py on 127.0.0.1; nothing reaches the
real network, and huggingface_hub's cache lives in the test's temporary directory."""

from __future__ import annotations

import io
import os
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants

from simcse.core.errors import ConfigError, MissingDataError, SimCSEError
from simcse.data import download as dl
from simcse.data.hub import HubUnreachableError
from tests.fake_hub import FakeHub, closed_port_url, isolate, running
from tests.helpers import assert_one_line_error, run

WIKI = "wiki1m_for_simcse.txt"
NLI = "nli_for_simcse.csv"
SENTEVAL = "senteval.tar"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("SIMCSE_DATA_DIR", str(tmp_path / "env-data"))


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with running(FakeHub()) as fake:
        yield fake


def _files(hub: FakeHub) -> dict[str, bytes]:
    """The dataset repo's files on the fake Hub (created empty)."""
    return hub.datasets.setdefault(dl.DATASET_REPO, {})


def _payload(n: int = 300_000) -> bytes:
    return random.Random(n).randbytes(n)


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


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


SENTEVAL_TAR = [
    ("downstream", None, None),
    ("downstream/STS", None, None),
    ("downstream/STS/STSBenchmark", None, None),
    ("downstream/STS/STSBenchmark/sts-test.csv", b"a\tb\t5.0\n", None),
    ("downstream/MR/rt-polarity.pos", b"good film\n", None),
]


# ----------------------------------------------------------------------------------------------------------
# Paths, URLs, endpoints


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
    repo_path = "datasets/princeton-nlp/datasets-for-simcse/resolve/main"
    assert (
        dl.dataset_url("nli", "http://mirror:8080/") == f"http://mirror:8080/{repo_path}/nli_for_simcse.csv"
    )
    monkeypatch.setenv("HF_ENDPOINT", "https://env-mirror")
    assert dl.dataset_url("senteval") == f"https://env-mirror/{repo_path}/senteval.tar"
    monkeypatch.delenv("HF_ENDPOINT")
    assert dl.dataset_url("wiki1m") == f"https://huggingface.co/{repo_path}/wiki1m_for_simcse.txt"
    with pytest.raises(SimCSEError, match="unknown dataset 'sts'"):
        dl.dataset_path("sts", tmp_path)


@pytest.mark.parametrize(
    "endpoint",
    ["ftp://mirror", "mirror.example", "http://", "http://host:port", "http://h/?q=1", "http://[::1"],
)
def test_malformed_endpoint_is_refused_before_any_request(
    endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"--endpoint must be an http:// or https:// URL"):
        dl.download_dataset("nli", tmp_path, endpoint=endpoint, progress=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(ConfigError, match=r"\$HF_ENDPOINT must be an http:// or https:// URL"):
        dl.download_dataset("nli", tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------------------
# Downloads


def test_each_dataset_lands_in_its_place(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wiki, nli = _payload(), b"sent0,sent1,hard_neg\n"
    _files(hub).update({WIKI: wiki, NLI: nli, SENTEVAL: _tar(SENTEVAL_TAR)})
    data = tmp_path / "data"
    assert dl.main_download(["all"], str(data), endpoint=hub.url) == 0
    out = capsys.readouterr().out
    assert f"senteval: {data / 'senteval' / 'downstream'}\n" in out
    assert f"wiki1m: {data / 'wiki' / WIKI}\n" in out and f"nli: {data / 'nli' / NLI}\n" in out
    assert (data / "wiki" / WIKI).read_bytes() == wiki
    assert (data / "nli" / NLI).read_bytes() == nli
    downstream = data / "senteval" / "downstream"
    assert (downstream / "STS" / "STSBenchmark" / "sts-test.csv").read_bytes() == b"a\tb\t5.0\n"
    assert (downstream / "MR" / "rt-polarity.pos").read_bytes() == b"good film\n"
    # self-contained: real files (no links into the Hub cache), no temporary file or folder, no tar
    assert not (data / "wiki" / WIKI).is_symlink() and not (data / "nli" / NLI).is_symlink()
    assert [p for p in _tree(data) if "downstream" not in p] == [
        "nli",
        f"nli/{NLI}",
        "senteval",
        "wiki",
        f"wiki/{WIKI}",
    ]
    # present: nothing asked again
    requests = len(hub.log)
    assert dl.main_download(["nli"], str(data), endpoint=hub.url) == 0
    assert "(already present)" in capsys.readouterr().out
    assert len(hub.log) == requests


def test_endpoint_defaults_to_hf_endpoint(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _files(hub)[NLI] = b"x\n"
    monkeypatch.setenv("HF_ENDPOINT", hub.url + "/")
    assert dl.download_dataset("nli", tmp_path, progress=False).read_bytes() == b"x\n"


def test_cut_transfer_is_resumed(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub resumes from its last complete chunk (10 MB), within the same call
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 10_000)
    data = _payload()
    _files(hub)[NLI] = data
    hub.cuts, hub.cut_at = 1, 100_000
    path = dl.download_dataset("nli", tmp_path, endpoint=hub.url, progress=False)
    assert path.read_bytes() == data
    assert hub.gets("cdn") == [None, "bytes=100000-"]


def test_corrupt_transfer_is_refused_and_not_kept(hub: FakeHub, tmp_path: Path) -> None:
    data = _payload()
    _files(hub)[WIKI] = data
    hub.tamper = True  # same size, other bytes: only the sha256 tells
    with pytest.raises(SimCSEError, match="failed verification: sha256 .* but the Hub says") as info:
        dl.download_dataset("wiki1m", tmp_path / "data", endpoint=hub.url, progress=False)
    assert "run the command again" in str(info.value)
    assert not (tmp_path / "data").exists()
    hub.tamper = False  # the corrupt copy left the Hub cache: the next run downloads it again
    assert (
        dl.download_dataset("wiki1m", tmp_path / "data", endpoint=hub.url, progress=False).read_bytes()
        == data
    )
    assert len(hub.gets("cdn")) == 2


def test_short_transfer_is_refused(hub: FakeHub, tmp_path: Path) -> None:
    _files(hub)[WIKI] = _payload(1000)
    hub.short_by = 10  # a complete answer of 990 bytes where the Hub announced 1000
    with pytest.raises(SimCSEError, match=f"download of {WIKI} from {hub.url} failed: .*size 1000 .* 990"):
        dl.download_dataset("wiki1m", tmp_path / "data", endpoint=hub.url, progress=False)
    assert not (tmp_path / "data").exists()


def test_force_downloads_again(hub: FakeHub, tmp_path: Path) -> None:
    _files(hub)[NLI] = b"old\n"
    path = dl.download_dataset("nli", tmp_path, endpoint=hub.url, progress=False)
    _files(hub)[NLI] = b"new\n"
    assert dl.download_dataset("nli", tmp_path, endpoint=hub.url, progress=False).read_bytes() == b"old\n"
    dl.download_dataset("nli", tmp_path, endpoint=hub.url, progress=False, force=True)
    assert path.read_bytes() == b"new\n"
    assert sorted(p.name for p in path.parent.iterdir()) == [NLI]


@pytest.mark.parametrize(
    ("fail", "words"),
    [
        ({}, f"HTTP 404 .*{NLI} does not exist"),  # not on the Hub
        ({"resolve": 500}, "HTTP 500"),
        ({"resolve": 401}, "HTTP 401"),
        ({"cdn": 403}, "HTTP 403"),
    ],
)
def test_http_errors_are_one_clear_line(hub: FakeHub, tmp_path: Path, fail: dict, words: str) -> None:
    _files(hub)[WIKI] = b"x\n"
    if fail:
        _files(hub)[NLI] = b"x\n"
    hub.fail = fail
    with pytest.raises(SimCSEError, match=f"download of {NLI} from {hub.url} failed: {words}") as info:
        dl.download_dataset("nli", tmp_path / "data", endpoint=hub.url, progress=False)
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not (tmp_path / "data").exists()  # nothing created for a failed request


def test_a_server_that_is_no_hub_is_named(hub: FakeHub, tmp_path: Path) -> None:
    _files(hub)[NLI] = b"x\n"
    hub.plain = True
    with pytest.raises(SimCSEError, match=f"{hub.url} is not a Hugging Face Hub"):
        dl.download_dataset("nli", tmp_path / "data", endpoint=hub.url, progress=False)


def test_unwritable_destination_is_clear(hub: FakeHub, tmp_path: Path) -> None:
    _files(hub)[NLI] = b"x"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(SimCSEError, match="cannot write .*choose another data directory with --dir"):
        dl.download_dataset("nli", blocker / "data", endpoint=hub.url, progress=False)


# ----------------------------------------------------------------------------------------------------------
# senteval.tar


def test_senteval_force_replaces_tree(hub: FakeHub, tmp_path: Path) -> None:
    _files(hub)[SENTEVAL] = _tar(SENTEVAL_TAR)
    path = dl.download_dataset("senteval", tmp_path, endpoint=hub.url, progress=False)
    _files(hub)[SENTEVAL] = _tar([("downstream/SICK/SICK_test.txt", b"new\n", None)])
    dl.download_dataset("senteval", tmp_path, endpoint=hub.url, progress=False, force=True)
    assert _tree(path) == ["SICK", "SICK/SICK_test.txt"]
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
def test_malicious_tar_refused(hub: FakeHub, tmp_path: Path, entries: list, why: str) -> None:
    _files(hub)[SENTEVAL] = _tar(entries)
    data_dir = tmp_path / "data"
    with pytest.raises(SimCSEError, match=f"refusing to extract member .*({why})"):
        dl.download_dataset("senteval", data_dir, endpoint=hub.url, progress=False)
    assert list((data_dir / "senteval").iterdir()) == []  # no partial tree, no temp dir, no tar
    assert not (tmp_path / "evil").exists() and not (data_dir / "evil").exists()
    assert not Path("/tmp/simcse-test-evil").exists()


def test_tar_without_downstream_folder_leaves_nothing(hub: FakeHub, tmp_path: Path) -> None:
    _files(hub)[SENTEVAL] = _tar([("data/x.txt", b"x", None)])
    with pytest.raises(SimCSEError, match="expected a top-level 'downstream/' folder, found: data"):
        dl.download_dataset("senteval", tmp_path, endpoint=hub.url, progress=False)
    assert list((tmp_path / "senteval").iterdir()) == []


def test_safe_internal_symlink_allowed(hub: FakeHub, tmp_path: Path) -> None:
    _files(hub)[SENTEVAL] = _tar([*SENTEVAL_TAR, ("downstream/MR/alias", None, "rt-polarity.pos")])
    path = dl.download_dataset("senteval", tmp_path, endpoint=hub.url, progress=False)
    assert (path / "MR" / "alias").read_bytes() == b"good film\n"


# ----------------------------------------------------------------------------------------------------------
# No connection: offline mode, an unreachable endpoint


def test_unreachable_endpoint_names_the_path_and_the_command(tmp_path: Path) -> None:
    endpoint = closed_port_url()
    with pytest.raises(HubUnreachableError, match=f"{endpoint} is unreachable"):
        dl.download_dataset("senteval", tmp_path, endpoint=endpoint, progress=False)
    with pytest.raises(MissingDataError) as info:
        dl.ensure_dataset("senteval", tmp_path)  # $HF_ENDPOINT is a closed port too
    expected = tmp_path / "senteval" / "downstream"
    message = str(info.value)
    assert message.startswith(f"{expected}: not found and http://127.0.0.1:")
    assert "is unreachable" in message and "\n" not in message
    assert message.endswith(f"; fetch it with: simcse data download senteval --dir {tmp_path}")
    assert info.value.path == str(expected)
    assert list(tmp_path.iterdir()) == []


def test_offline_mode_names_the_path_and_the_command(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _files(hub)[NLI] = b"x\n"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    with pytest.raises(
        MissingDataError, match=r"nli_for_simcse.csv: not found and offline mode is on .*fetch it"
    ):
        dl.ensure_dataset("nli", tmp_path, endpoint=hub.url)
    with pytest.raises(HubUnreachableError, match="--force needs the Hub"):
        dl.download_dataset("nli", tmp_path, endpoint=hub.url, progress=False, force=True)
    assert hub.log == [] and list(tmp_path.iterdir()) == []


def test_offline_or_unreachable_uses_the_hub_cache(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _files(hub)[WIKI] = _payload()
    dl.download_dataset("wiki1m", tmp_path / "first", endpoint=hub.url, progress=False)
    requests = len(hub.log)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    path = dl.ensure_dataset("wiki1m", tmp_path / "second", endpoint=hub.url)
    assert path.read_bytes() == _files(hub)[WIKI] and len(hub.log) == requests
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    path = dl.download_dataset("wiki1m", tmp_path / "third", endpoint=closed_port_url(), progress=False)
    assert path.read_bytes() == _files(hub)[WIKI]


def test_ensure_dataset_without_download(hub: FakeHub, tmp_path: Path) -> None:
    _files(hub)[NLI] = b"x"
    with pytest.raises(MissingDataError, match="nli_for_simcse.csv: not found; fetch it with"):
        dl.ensure_dataset("nli", tmp_path, download=False, endpoint=hub.url)
    assert hub.log == []


def test_ensure_dataset_downloads(hub: FakeHub, tmp_path: Path) -> None:
    _files(hub)[NLI] = b"sent0,sent1,hard_neg\n"
    path = dl.ensure_dataset("nli", tmp_path, endpoint=hub.url)
    assert path.read_bytes() == b"sent0,sent1,hard_neg\n"
    requests = len(hub.log)
    assert dl.ensure_dataset("nli", tmp_path, endpoint=hub.url) == path
    assert len(hub.log) == requests


def test_ensure_dataset_download_failure_is_missing_data(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(
        MissingDataError, match="download failed .*HTTP 404.*fetch it with: simcse data download"
    ):
        dl.ensure_dataset("wiki1m", tmp_path, endpoint=hub.url)


# ----------------------------------------------------------------------------------------------------------
# The command


def test_cli_download(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _files(hub)[NLI] = b"x\n"
    code, out, err = run(capsys, ["data", "download", "nli", "--dir", str(tmp_path), "--endpoint", hub.url])
    assert code == 0, err
    assert out == f"nli: {tmp_path / 'nli' / NLI}\n"


def test_cli_errors_are_one_line(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    code, _, err = run(capsys, ["data", "download", "nli", "--dir", str(data), "--endpoint", "mirror"])
    assert_one_line_error(code, err, "--endpoint", "'mirror'")
    endpoint = closed_port_url()
    code, _, err = run(capsys, ["data", "download", "nli", "--dir", str(data), "--endpoint", endpoint])
    assert_one_line_error(code, err, "nli", endpoint, "unreachable")
    code, _, err = run(capsys, ["data", "download", "nli", "--base-url", hub.url])  # replaced by --endpoint
    assert code == 2 and "unrecognized arguments: --base-url" in err
    assert not data.exists()


def test_main_download_reports_each_failure(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert dl.main_download(["sts"], str(tmp_path), endpoint=hub.url) == 2
    assert "unknown dataset 'sts'" in capsys.readouterr().err
    _files(hub)[NLI] = b"x\n"
    assert dl.main_download(["wiki1m", "nli"], str(tmp_path), endpoint=hub.url) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("simcse: error: wiki1m:") and "HTTP 404" in captured.err
    assert captured.err.count("\n") == 1
    assert f"nli: {tmp_path / 'nli' / NLI}" in captured.out  # the other dataset still downloaded


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_destination_is_clear(hub: FakeHub, tmp_path: Path) -> None:
    _files(hub)[NLI] = b"x"
    (tmp_path / "nli").mkdir()
    (tmp_path / "nli").chmod(0o500)
    try:
        with pytest.raises(SimCSEError, match="cannot write.*Permission denied"):
            dl.download_dataset("nli", tmp_path, endpoint=hub.url, progress=False)
    finally:
        (tmp_path / "nli").chmod(0o700)


# ----------------------------------------------------------------------------------------------------------
# A sample of a file's first lines


def test_a_head_sample_stands_in_for_the_first_rows(hub: FakeHub, tmp_path: Path) -> None:
    wiki = tmp_path / "wiki"
    wiki.mkdir()
    (wiki / "wiki1m_for_simcse.head100.txt").write_text("a\n" * 100)
    (wiki / "wiki1m_for_simcse.head20.txt").write_text("b\n" * 20)
    (wiki / "wiki1m_for_simcse.headless.txt").write_text("c\n")
    assert (
        dl.ensure_dataset("wiki1m", tmp_path, rows=20, endpoint=hub.url).name
        == "wiki1m_for_simcse.head20.txt"
    )
    assert (
        dl.ensure_dataset("wiki1m", tmp_path, rows=21, endpoint=hub.url).name
        == "wiki1m_for_simcse.head100.txt"
    )
    assert hub.log == []  # nothing asked of the Hub
    with pytest.raises(MissingDataError, match="fetch it with: simcse data download wiki1m"):
        dl.ensure_dataset("wiki1m", tmp_path, rows=101, endpoint=hub.url)  # no sample is long enough
    (wiki / "wiki1m_for_simcse.txt").write_text("whole\n")
    assert dl.ensure_dataset("wiki1m", tmp_path, rows=20, endpoint=hub.url).name == "wiki1m_for_simcse.txt"


def test_ensure_dataset_says_what_it_downloads(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _files(hub)[NLI] = b"sent0,sent1,hard_neg\n"
    path = dl.ensure_dataset("nli", tmp_path, endpoint=hub.url)
    err = capsys.readouterr().err
    assert (
        f"simcse: downloading nli (nli_for_simcse.csv) from {hub.url} into {tmp_path / 'nli'} (0.0 MB)" in err
    )
    assert f"simcse: downloaded nli to {path}" in err
    dl.ensure_dataset("nli", tmp_path, endpoint=hub.url)
    assert "download" not in capsys.readouterr().err  # present: nothing to say
