"""A run killed with SIGKILL and resumed ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import SENTENCES, make_tiny_bert

STEPS, SAVE_EVERY = 48, 4


def _cmd(model: Path, train_file: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "simcse.cli", "train", "--model_name_or_path", str(model), "--train_file",
            str(train_file), "--output_dir", str(out), "--batch_size", "16", "--max_seq_len", "24", "--max_steps",
            str(STEPS), "--save_steps", str(SAVE_EVERY), "--save_total_limit", "2", "--do_mlm", "true",
            "--dev_eval", "false", "--final_eval", "none", "--progress_bar", "false", "--tensorboard", "false",
            "--learning_rate", "1e-3", "--warmup_steps", "5", *extra]  # fmt: skip


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    from transformers import BertConfig, BertForMaskedLM

    model = make_tiny_bert(root / "model", layers=3, hidden=64)
    torch.manual_seed(3)
    BertForMaskedLM(BertConfig.from_pretrained(str(model))).save_pretrained(str(model))
    train_file = root / "train.txt"
    random.seed(0)
    lines = [" ".join(random.sample(s.split() * 3, k=min(12, len(s.split()) * 2))) for s in SENTENCES * 20]
    train_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    reference = root / "reference"
    proc = subprocess.run(
        _cmd(model, train_file, reference), capture_output=True, text=True, env=_env(), timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return model, train_file, load_file(str(reference / "model.safetensors"))


def _newest_step(out: Path) -> int:
    from simcse.training.checkpoint import checkpoint_dirs

    return int(checkpoint_dirs(out)[-1].name.split("-")[1])


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"training ended before the expected checkpoint:\n{err[-3000:]}")
        assert time.time() < deadline, f"timed out waiting for {path}"
        time.sleep(0.005)


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_gives_identical_weights(setup, tmp_path):
    model, train_file, reference = setup
    out = tmp_path / "run"
    rng = random.Random(7)
    kill_after = [8, 20, 32]  # checkpoints that must exist before each kill; a random delay follows
    for i, step in enumerate(kill_after):
        expected = _newest_step(out) if i else None  # the step a resumed run must start from
        args = _cmd(model, train_file, out, *(["--resume"] if i else []))
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
        _wait_for(out / "checkpoints" / f"step-{step:08d}", proc)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        assert not (out / "model.safetensors").exists(), "the run finished before it was killed"
        if expected is not None:
            assert f"(step {expected})" in err.decode(), err.decode()[-2000:]
    expected = _newest_step(out)
    assert expected >= kill_after[-1]
    final = subprocess.run(_cmd(model, train_file, out, "--resume"), capture_output=True, text=True, env=_env(),
                           timeout=600)  # fmt: skip
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"resuming from {out / 'checkpoints' / f'step-{expected:08d}'} (step {expected})" in final.stderr
    got = load_file(str(out / "model.safetensors"))
    assert got.keys() == reference.keys()
    for k in reference:
        assert torch.equal(got[k], reference[k]), k


@pytest.mark.slow
def test_corrupted_latest_checkpoint_falls_back_to_previous(setup, tmp_path):
    model, train_file, reference = setup
    out = tmp_path / "run"
    proc = subprocess.Popen(
        _cmd(model, train_file, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env()
    )
    _wait_for(out / "checkpoints" / "step-00000016", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from simcse.training.checkpoint import checkpoint_dirs

    newest, previous = checkpoint_dirs(out)[-1], checkpoint_dirs(out)[-2]
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    final = subprocess.run(_cmd(model, train_file, out, "--resume"), capture_output=True, text=True, env=_env(),
                           timeout=600)  # fmt: skip
    assert final.returncode == 0, final.stderr[-3000:]
    assert "skipping a broken checkpoint" in final.stderr
    assert f"resuming from {previous} (step {int(previous.name.split('-')[1])})" in final.stderr
    got = load_file(str(out / "model.safetensors"))
    for k in reference:
        assert torch.equal(got[k], reference[k]), k
