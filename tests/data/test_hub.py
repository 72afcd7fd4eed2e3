"""Tests for ``simcse push`` (simcse.data.hub.push_model) against the fake Hub of tests/fake_hub.py on 127.0.0.1;
nothing reaches the real network."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants

from simcse.core.errors import ConfigError, SimCSEError
from simcse.data.hub import check_model_dir, check_repo_id, push_model, resolve_endpoint
from tests.fake_hub import FakeHub, closed_port_url, isolate, running
from tests.helpers import assert_one_line_error, make_tiny_bert, run

README = "---\nlibrary_name: sentence-transformers\ntags:\n- simcse\n---\n# tiny simcse\n"
LEFTOVERS = {  # what a finished `simcse train` run keeps next to its model, and stray temporary files
    ".simcse-files": b"checkpoints\nmodel.safetensors\n",
    "checkpoints/step-00000004/model.safetensors": b"weights of step 4",
    "checkpoints/best/config.json": b"{}",
    "tensorboard/events.out.tfevents.1.host": b"events",
    "wandb/run-1/files/output.log": b"console log, host name, command line",
    "mlruns/mlflow.db": b"sqlite",
    "trackers.json": b'{"name": "run"}',
    "model.safetensors.tmp": b"half written",
    "export.tmp/config.json": b"{}",
    "nli_for_simcse.csv.part": b"partial",
}
KEPT = {"train_config.yaml": b"batch_size: 4\n", "metrics.jsonl": b'{"step": 4}\n', "results.json": b"{}"}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with running(FakeHub()) as fake:
        yield fake


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from simcse import Encoder

    tmp = tmp_path_factory.mktemp("push")
    return Encoder.load(make_tiny_bert(tmp / "bert"), pooler="cls").save(tmp / "model")


@pytest.fixture
def run_dir(saved_model: Path, tmp_path: Path) -> Path:
    """A training run's output directory: the model with a README, the run's files and its leftovers."""
    out = tmp_path / "run"
    shutil.copytree(saved_model, out)
    (out / "README.md").write_text(README, encoding="utf-8")
    for rel, content in {**LEFTOVERS, **KEPT}.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(content)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _expected(run_dir: Path) -> dict[str, bytes]:
    return {rel: content for rel, content in _files(run_dir).items() if rel not in LEFTOVERS}


# ----------------------------------------------------------------------------------------------------------
# Uploads


@pytest.mark.parametrize("xet", [True, False], ids=["hf_xet installed", "without hf_xet"])
def test_push_uploads_every_model_file_and_no_leftover(
    hub: FakeHub, run_dir: Path, monkeypatch: pytest.MonkeyPatch, xet: bool
) -> None:
    # huggingface_hub takes another code path (a pipelined upload) when hf_xet is installed
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", not xet, raising=False)
    url = push_model(run_dir, "tiny-simcse", token=hub.token, endpoint=hub.url)
    assert url == f"{hub.url}/tester/tiny-simcse"
    uploaded = hub.models["tester/tiny-simcse"]["main"]
    assert uploaded == _expected(run_dir)  # byte-identical
    for name in ("config.json", "model.safetensors", "modules.json", "simcse.json", "README.md", *KEPT):
        assert name in uploaded, name
    assert [c.summary for c in hub.commits] == ["Upload run with simcse push"]
    assert hub.private["tester/tiny-simcse"] is False


def test_push_to_an_owner_a_branch_private_with_a_message(hub: FakeHub, run_dir: Path) -> None:
    url = push_model(
        run_dir,
        "team/tiny",
        private=True,
        revision="v1",
        commit_message="first release",
        token=hub.token,
        endpoint=hub.url + "/",
    )
    assert url == f"{hub.url}/team/tiny/tree/v1"
    assert hub.private["team/tiny"] is True
    assert hub.models["team/tiny"]["main"] == {}
    assert hub.models["team/tiny"]["v1"] == _expected(run_dir)
    assert [(c.revision, c.summary) for c in hub.commits] == [("v1", "first release")]


def test_push_again_updates_the_existing_repo(hub: FakeHub, run_dir: Path) -> None:
    push_model(run_dir, "tiny", token=hub.token, endpoint=hub.url)
    (run_dir / "README.md").write_text(README + "\nbetter results\n", encoding="utf-8")
    push_model(run_dir, "tester/tiny", revision="main", token=hub.token, endpoint=hub.url)  # exists: kept
    assert len(hub.commits) == 2
    assert hub.models["tester/tiny"]["main"]["README.md"].endswith(b"better results\n")


def test_a_sentence_transformers_layout_with_the_model_in_a_module_folder(tmp_path: Path) -> None:
    st = tmp_path / "st"
    (st / "0_Transformer").mkdir(parents=True)
    (st / "0_Transformer" / "config.json").write_text("{}")
    (st / "0_Transformer" / "pytorch_model.bin").write_bytes(b"w")
    modules = [
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"}
    ]
    (st / "modules.json").write_text(json.dumps(modules))
    assert check_model_dir(st) == st
    (st / "0_Transformer" / "pytorch_model.bin").unlink()
    with pytest.raises(SimCSEError, match="not a model directory"):
        check_model_dir(st)


@pytest.mark.parametrize("repo", ["tiny", "me/tiny-simcse_v1.2", "A1/b"])
def test_repo_ids_accepted(repo: str) -> None:
    assert check_repo_id(repo) == repo


@pytest.mark.parametrize(
    "repo",
    ["", "a/b/c", "/tiny", "me/", "-tiny", "tiny-", "ti--ny", "ti..ny", "my model", "tiny.git", "x" * 97],
)
def test_repo_ids_refused(repo: str) -> None:
    with pytest.raises(ConfigError, match="is not a Hugging Face repo id"):
        check_repo_id(repo)


def test_endpoint_default_and_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT")
    assert resolve_endpoint() == "https://huggingface.co"
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror:8080/")
    assert resolve_endpoint() == "http://mirror:8080"
    assert resolve_endpoint("https://hub.example/") == "https://hub.example"
    with pytest.raises(ConfigError, match=r"^\$HF_ENDPOINT must be"):
        monkeypatch.setenv("HF_ENDPOINT", "mirror:8080")
        resolve_endpoint()


def test_old_huggingface_hub_pushes_only_to_hf_endpoint(
    hub: FakeHub, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    # before 1.4, huggingface_hub read a new commit's URL against $HF_ENDPOINT (as at import): the upload
    # to another endpoint would fail once done, so it is refused before the first request
    monkeypatch.setattr(huggingface_hub, "__version__", "0.24.0")
    with pytest.raises(ConfigError, match=f"run it as HF_ENDPOINT={hub.url} simcse push"):
        push_model(run_dir, "tiny", token=hub.token, endpoint=hub.url)
    assert hub.log == []
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)  # HF_ENDPOINT was set when it was imported
    assert push_model(run_dir, "tiny", token=hub.token, endpoint=hub.url) == f"{hub.url}/tester/tiny"


# ----------------------------------------------------------------------------------------------------------
# The command


def test_cli_push_prints_the_url(
    hub: FakeHub, run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("HF_TOKEN", hub.token)  # the default token
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the default endpoint
    code, out, err = run(capsys, ["push", str(run_dir), "tiny"])
    assert code == 0, err
    assert out == f"pushed {run_dir} to {hub.url}/tester/tiny\n"
    assert hub.models["tester/tiny"]["main"] == _expected(run_dir)


@pytest.mark.parametrize(
    ("case", "names"),
    [
        ("missing dir", ["{dir}", "not found"]),
        ("a file", ["{dir}", "is a file"]),
        ("not a model", ["{dir}", "not a model directory"]),
        ("unfinished run", ["{dir}", "not a model directory"]),
        ("bad repo", ["'a/b/c'", "repo id"]),
        ("bad endpoint", ["--endpoint", "'ftp://hub'"]),
        ("bad revision", ["--revision"]),
    ],
)
def test_cli_input_errors_are_one_line_and_send_nothing(
    hub: FakeHub, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, case: str, names: list[str]
) -> None:
    model, repo, extra = run_dir, "tiny", ["--endpoint", hub.url, "--token", hub.token]
    if case == "missing dir":
        model = tmp_path / "nowhere"
    elif case == "a file":
        model = run_dir / "config.json"
    elif case == "not a model":
        model = tmp_path / "docs"
        model.mkdir()
        (model / "README.md").write_text("# not a model\n")
    elif case == "unfinished run":  # checkpoints only: the model is written at the top when training ends
        model = tmp_path / "running"
        shutil.copytree(run_dir / "checkpoints", model / "checkpoints")
    elif case == "bad repo":
        repo = "a/b/c"
    elif case == "bad endpoint":
        extra = ["--endpoint", "ftp://hub"]
    elif case == "bad revision":
        extra += ["--revision", " main"]
    code, _, err = run(capsys, ["push", str(model), repo, *extra])
    assert_one_line_error(code, err, *[name.replace("{dir}", str(model)) for name in names])
    assert hub.log == []


@pytest.mark.parametrize(
    ("fail", "token", "words"),
    [
        ({}, "hf_wrong", ["HTTP 401", "--token", "HF_TOKEN"]),
        ({"create": 403}, None, ["HTTP 403", "--token"]),
        ({"create": 500}, None, ["HTTP 500", "injected failure of create"]),
        ({"commit": 403}, None, ["HTTP 403"]),
        ({"validate": 400}, None, ["Invalid metadata in README.md"]),
    ],
)
def test_cli_hub_errors_are_one_line(
    hub: FakeHub,
    run_dir: Path,
    capsys: pytest.CaptureFixture,
    fail: dict[str, int],
    token: str | None,
    words: list[str],
) -> None:
    hub.fail = fail
    code, _, err = run(
        capsys, ["push", str(run_dir), "tiny", "--endpoint", hub.url, "--token", token or hub.token]
    )
    assert_one_line_error(code, err, str(run_dir), "tiny", hub.url, *words)
    assert hub.commits == []


def test_cli_unreachable_endpoint_is_one_line(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    endpoint = closed_port_url()
    code, _, err = run(capsys, ["push", str(run_dir), "me/tiny", "--endpoint", endpoint, "--token", "hf_x"])
    assert_one_line_error(code, err, "me/tiny", endpoint, "failed")
