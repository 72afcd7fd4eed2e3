"""The quickstart on a fresh machine: no data directory, an empty home, the paper's files on the (fake) Hub.
``simcse train configs/quickstart.yaml`` and ``simcse eval`` download what they need, say so, and run; offline
they stop at once with one line naming the command that fetches the data and the directory it goes to."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from simcse.data import download as dl
from tests.fake_hub import FakeHub, isolate, running
from tests.helpers import head_lines, run

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
KEPT_LINES = 40  # of every SentEval STS and SICK file: enough pairs to score, a few seconds to encode


def _mini_senteval(data_dir: Path, tmp_path: Path) -> bytes:
    """senteval.tar with the STS and SICK folders of the real tree, each file cut to its first lines."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for folder in ("STS", "SICK"):
            mini = head_lines(data_dir / "senteval" / "downstream" / folder, tmp_path / folder, KEPT_LINES)
            tar.add(mini, arcname=f"downstream/{folder}")
    return buf.getvalue()


@pytest.fixture
def fresh(monkeypatch, tmp_path, data_dir, embedded_model):
    """An empty home and no SIMCSE_DATA_DIR; the Hub serves wiki1m (12,000 lines) and a small senteval."""
    isolate(monkeypatch, tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SIMCSE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    wiki = "".join(f"sentence number {i} of the fake wikipedia file .\n" for i in range(12_000))
    with running(FakeHub()) as hub:
        hub.datasets[dl.DATASET_REPO] = {
            "wiki1m_for_simcse.txt": wiki.encode(),
            "senteval.tar": _mini_senteval(data_dir, tmp_path / "mini"),
        }
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield home / ".cache" / "simcse" / "data"


def test_the_quickstart_downloads_its_data_and_trains(fresh, capsys):
    out = Path("runs") / "quickstart"
    code, stdout, err = run(
        capsys, ["train", str(QUICKSTART), "--max_steps", "2", "--final_eval_baseline", "false"]
    )
    assert code == 0, err
    assert "simcse: downloading wiki1m (wiki1m_for_simcse.txt) from http://127.0.0.1:" in err
    assert f"simcse: downloaded wiki1m to {fresh / 'wiki' / 'wiki1m_for_simcse.txt'}" in err
    assert f"simcse: downloaded senteval to {fresh / 'senteval' / 'downstream'}" in err
    assert "simcse: unsup on 11,914 rows from" in err  # the first 11,914 rows, as the sample has them
    assert "| quickstart " in stdout and (out / "model.safetensors").is_file()
    code, stdout, err = run(capsys, ["eval", str(out), "--tasks", "STSBenchmark", "--mode", "dev"])
    assert code == 0, err
    assert "download" not in err  # the data is there now
    assert "STS-B" in stdout or "STSBenchmark" in stdout


def test_offline_the_quickstart_names_the_download_in_one_line(fresh, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, _, err = run(capsys, ["train", str(QUICKSTART), "--max_steps", "2"])
    assert code == 2 and "Traceback" not in err and "downloading" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"simcse: error: {fresh / 'wiki' / 'wiki1m_for_simcse.txt'}: not found")
    assert last.endswith("fetch it with: simcse data download wiki1m")
    assert not (Path("runs") / "quickstart").exists()  # nothing written
