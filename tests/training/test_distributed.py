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
    """Dropout off (so that processes and a single process see the same views) and weights spread wide
    enough that the embeddings differ and every gradient is well above float noise."""
    return make_tiny_bert(tmp_path_factory.mktemp("ddp"), dropout=0.0, init_range=0.5)


def _assert_relatively_close(got: dict, want: dict, rtol: float, what: str) -> None:
    """Each tensor within ``rtol`` of its norm; tensors with (almost) no signal must match (almost) zero."""
    assert got.keys() == want.keys()
    scale = max(v.norm().item() for v in want.values())
    wrong = []
    for k, v in want.items():
        error = (got[k].double() - v.double()).norm().item()
        if error > rtol * max(v.norm().item(), 1e-2 * scale):
            wrong.append(f"{k}: |diff| {error:.3g}, |x| {v.norm():.3g}")
    assert not wrong, f"{what}s differ: " + "; ".join(wrong)


@pytest.mark.parametrize("views,alpha", [(2, 1.0), (3, 1.0), (3, 2.0)])
def test_two_processes_equal_one_process_on_concatenated_batch(bert_no_dropout, tmp_path, views, alpha):
    from tests.training.ddp_check import ROWS, embeddings, step

    cosines = embeddings(str(bert_no_dropout), ROWS) @ embeddings(str(bert_no_dropout), ROWS).T
    off_diagonal = cosines[~torch.eye(len(ROWS), dtype=torch.bool)]
    assert off_diagonal.max() < 0.95 and off_diagonal.std() > 0.1, (
        "degenerate embeddings: the test is too weak"
    )
    out = tmp_path / "ddp.pt"
    proc = _torchrun([str(HERE / "ddp_check.py"), str(bert_no_dropout), str(views), str(alpha), str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(out, weights_only=True)
    loss, grads = step(str(bert_no_dropout), views, alpha, ROWS, ddp=False)
    assert abs(got["loss"].item() - loss.item()) <= 1e-5 * abs(loss.item())
    large = [k for k, g in grads.items() if g.norm() > 1e-2]
    assert len(large) >= len(grads) // 2, f"only {len(large)} of {len(grads)} gradients are not tiny"
    _assert_relatively_close(got["grads"], grads, 1e-4, "gradient")


def test_the_original_ddp_gradient_is_the_single_process_one_divided_by_the_processes(
    bert_no_dropout, tmp_path
):
    """ddp_gradient: original. The original code's gather keeps only the local slice's gradient and averages
    over all anchors on every process; DDP's average then gives the global gradient / world size."""
    from tests.training.ddp_check import ROWS, step

    out = tmp_path / "ddp.pt"
    proc = _torchrun([str(HERE / "ddp_check.py"), str(bert_no_dropout), "2", "1.0", str(out), "0.5"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(out, weights_only=True)
    loss, grads = step(str(bert_no_dropout), 2, 1.0, ROWS, ddp=False)
    assert abs(got["loss"].item() - loss.item()) <= 1e-5 * abs(loss.item())  # the value is not scaled
    _assert_relatively_close(got["grads"], {k: g / 2 for k, g in grads.items()}, 1e-4, "gradient")


def _train_args(model: Path, train_file: Path, out: Path) -> list[str]:
    return ["train", "--model_name_or_path", str(model), "--train_file", str(train_file), "--output_dir", str(out),
            "--batch_size", "8", "--max_steps", "4", "--save_steps", "2", "--learning_rate", "1e-3", "--dev_eval",
            "false", "--final_eval", "none", "--progress_bar", "false", "--tensorboard", "false",
            "--ddp_gradient", "global"]  # fmt: skip


@pytest.mark.slow
def test_simcse_train_under_torchrun_ends_with_the_weights_of_one_process(bert_no_dropout, tmp_path):
    """``--batch_size`` is the global batch: 2 processes of 4 rows each take the steps of 1 process of 8
    (with ``ddp_gradient: global``; the default, the original's, divides the gradient by 2)."""
    from safetensors.torch import load_file

    from tests.helpers import SENTENCES

    train_file = tmp_path / "train.txt"
    train_file.write_text("\n".join(SENTENCES * 3) + "\n", encoding="utf-8")
    two, one = tmp_path / "two", tmp_path / "one"
    proc = _torchrun(["-m", "simcse.cli", *_train_args(bert_no_dropout, train_file, two)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (two / "model.safetensors").exists() and (two / "modules.json").exists()
    ckpt = two / "checkpoints" / "step-00000002"
    assert (ckpt / "rng-rank0.pt").exists() and (ckpt / "rng-rank1.pt").exists()
    assert "2 x cpu" in proc.stderr
    single = subprocess.run([sys.executable, "-m", "simcse.cli", *_train_args(bert_no_dropout, train_file, one)],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    initial = load_file(str(bert_no_dropout / "model.safetensors"))
    got, want = load_file(str(two / "model.safetensors")), load_file(str(one / "model.safetensors"))
    moved = [k for k, v in want.items() if k in initial and not torch.allclose(v, initial[k], atol=1e-4)]
    assert len(moved) >= len(initial) // 2, "training barely changed the weights: the comparison is too weak"
    # Softmax ignores a bias added to every key, so the key biases' gradient is float noise (~1e-7) whose
    # summation order differs between 1 and 2 processes, and AdamW turns any noise into lr-sized steps.
    # Every other weight must agree.
    noise_only = {k for k in want if k.endswith("attention.self.key.bias")}
    assert noise_only
    _assert_relatively_close({k: v for k, v in got.items() if k not in noise_only},
                             {k: v for k, v in want.items() if k not in noise_only}, 1e-4, "final weight")  # fmt: skip


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
