"""Two processes (gloo, CPU) give the loss and gradients of one process on the concatenated batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import make_tiny_bert

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), *args]  # fmt: skip
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE), **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


@pytest.fixture(scope="module")
def bert_no_dropout(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("ddp"), dropout=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("views,alpha", [(2, 1.0), (3, 1.0), (3, 2.0)])
def test_two_processes_equal_one_process_on_concatenated_batch(bert_no_dropout, tmp_path, views, alpha):
    from tests.training.ddp_check import ROWS, step

    out = tmp_path / "ddp.pt"
    proc = _torchrun([str(HERE / "ddp_check.py"), str(bert_no_dropout), str(views), str(alpha), str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(out, weights_only=True)
    loss, grads = step(str(bert_no_dropout), views, alpha, ROWS, ddp=False)
    assert torch.allclose(got["loss"], loss, atol=1e-5)
    assert got["grads"].keys() == grads.keys()
    for k, g in grads.items():
        assert torch.allclose(got["grads"][k], g, atol=1e-5), k


@pytest.mark.slow
def test_simcse_train_under_torchrun(bert_no_dropout, tmp_path):
    train_file = tmp_path / "train.txt"
    from tests.helpers import SENTENCES

    train_file.write_text("\n".join(SENTENCES * 3) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["-m", "simcse.cli", "train", "--model_name_or_path", str(bert_no_dropout), "--train_file", str(train_file),
            "--output_dir", str(out), "--batch_size", "8", "--max_steps", "4", "--save_steps", "2", "--dev_eval",
            "false", "--final_eval", "none", "--progress_bar", "false", "--tensorboard", "false"]  # fmt: skip
    proc = _torchrun(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "model.safetensors").exists() and (out / "modules.json").exists()
    ckpt = out / "checkpoints" / "step-00000002"
    assert (ckpt / "rng-rank0.pt").exists() and (ckpt / "rng-rank1.pt").exists()
    assert "2 x cpu" in proc.stderr


@pytest.mark.slow
def test_a_non_finite_loss_on_one_process_stops_every_process(bert_no_dropout, tmp_path):
    from tests.helpers import SENTENCES

    train_file = tmp_path / "train.txt"
    train_file.write_text("\n".join(SENTENCES * 3) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = [str(HERE / "ddp_nan.py"), "train", "--model_name_or_path", str(bert_no_dropout), "--train_file",
            str(train_file), "--output_dir", str(out), "--batch_size", "8", "--max_steps", "6", "--save_steps", "2",
            "--dev_eval", "false", "--final_eval", "none", "--progress_bar", "false", "--tensorboard", "false"]  # fmt: skip
    proc = _torchrun(args, timeout=180)  # a rank left waiting at a collective would hit the timeout
    assert proc.returncode != 0
    assert proc.stderr.count("simcse: error: loss is not finite on a process") == 2, proc.stderr[-3000:]
    assert "at step 3" in proc.stderr
    assert (out / "checkpoints" / "step-00000002" / "manifest.json").exists()
