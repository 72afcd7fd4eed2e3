"""Failures that must not lose work: full disk while saving, corrupted checkpoints, non-finite gradients,
pickled code in a checkpoint, checkpoint directories that point outside the output directory.

The resume-after-SIGKILL and truncated-checkpoint cases are in test_resume.py; a NaN loss in test_train.py.
"""

from __future__ import annotations

import errno
import json
import re
import signal
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from simcse.cli import main
from simcse.core.errors import SimCSEError
from simcse.core.files import sha256_file
from simcse.training import checkpoint as ckpt
from simcse.training import loop as train_module
from simcse.training import run_dir
from simcse.training.config import TrainConfig
from simcse.training.loop import TrainingError, train
from tests.helpers import QUIET, SENTENCES, train_config

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def _config(model, train_file, out, **overrides) -> TrainConfig:
    """test_train's tiny config, with a checkpoint every 2 steps."""
    return train_config(model, train_file, out, **{"save_steps": 2, **overrides})


@pytest.fixture
def txt(tmp_path) -> Path:
    path = tmp_path / "train.txt"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path


class Tiny(torch.nn.Module):
    """A module with a tied weight (as the MLM decoder and the word embeddings) and > 4 KiB of weights."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(64, 32)
        self.dense = torch.nn.Linear(32, 32)
        self.decoder = torch.nn.Linear(32, 64, bias=False)
        self.decoder.weight = self.embed.weight


def _model_and_optimizer(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = Tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.decoder(model.dense(model.embed(torch.arange(8)))).sum().backward()
    optimizer.step()
    return model, optimizer


def _one_line(message: str) -> str:
    assert "\n" not in message and "\r" not in message, message
    return message


def _partial_then_enospc(fail_on: str, calls: list[str]):
    """A stand-in for checkpoint._write_bytes: the file named ``fail_on`` gets half its bytes, then the
    disk is full."""
    original = ckpt._write_bytes

    def write(path: Path, data: bytes) -> None:
        calls.append(path.name)
        if path.name == fail_on:
            path.write_bytes(data[: len(data) // 2])
            raise ENOSPC
        original(path, data)

    return write


def _interrupted_before_the_end(out: Path) -> None:
    """Make a finished run look like one killed while writing its final model (what --resume is for)."""
    meta = json.loads((out / "simcse.json").read_text(encoding="utf-8"))
    del meta["finished"]
    (out / "simcse.json").write_text(json.dumps(meta), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- full disk
@pytest.mark.parametrize(
    "fail_on", ["rng-rank0.pt", "model.safetensors", "optimizer.pt", "trainer_state.json", "manifest.json"]
)
def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fail_on):
    model, optimizer = _model_and_optimizer()
    first = ckpt.save_checkpoint(tmp_path, 2, model, optimizer, {"global_step": 2})
    before = {f.name: f.read_bytes() for f in first.iterdir()}
    calls: list[str] = []
    monkeypatch.setattr(ckpt, "_write_bytes", _partial_then_enospc(fail_on, calls))
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.save_checkpoint(tmp_path, 4, model, optimizer, {"global_step": 4})
    assert fail_on in calls
    message = _one_line(str(info.value))
    assert isinstance(info.value, SimCSEError)
    assert "(no space left on device) at step 4; the last good checkpoint is " + str(first) in message
    # nothing half-written is left, let alone one that looks valid
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000002"]
    assert {f.name: f.read_bytes() for f in first.iterdir()} == before
    assert ckpt.verify(first) is None
    assert ckpt.latest_checkpoint(tmp_path) == first
    fresh, fresh_optimizer = _model_and_optimizer(seed=1)
    assert ckpt.load_checkpoint(first, fresh, fresh_optimizer) == {"global_step": 2}
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_real_write_error_from_the_kernel_is_caught(tmp_path):
    """RLIMIT_FSIZE makes the kernel cut the write short and then fail it (EFBIG), as a full disk does
    (ENOSPC). torch.save and safetensors' save_file would report that as a bare RuntimeError /
    SafetensorError; the checkpoint code writes the bytes itself and reports the errno."""
    resource = pytest.importorskip("resource")  # POSIX only
    model, optimizer = _model_and_optimizer()
    first = ckpt.save_checkpoint(tmp_path, 2, model, optimizer, {})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        with pytest.raises(ckpt.CheckpointError, match=r"\(file too large\) at step 4; the last good"):
            ckpt.save_checkpoint(tmp_path, 4, model, optimizer, {})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [first.name]
    assert ckpt.verify(first) is None


def test_full_disk_during_training_stops_with_one_line_and_resume_continues(
    tiny_bert, txt, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    calls: list[str] = []
    original = ckpt._write_bytes
    failing = _partial_then_enospc("optimizer.pt", calls)
    # the first checkpoint (step 2) is written; the second (step 4) hits the full disk
    monkeypatch.setattr(
        ckpt, "_write_bytes", lambda p, d: (failing if "00000004" in str(p) else original)(p, d)
    )
    args = ["train", "--model_name_or_path", str(tiny_bert), "--train_file", str(txt), "--output_dir", str(out),
            "--batch_size", "4", "--max_seq_len", "16", "--max_steps", "6", "--save_steps", "2", *QUIET]  # fmt: skip
    code = main(args)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err
    assert re.fullmatch(
        r"simcse: error: \S+step-00000004\.tmp: cannot write the checkpoint \(no space left on device\) at step 4; "
        r"the last good checkpoint is \S+step-00000002",
        last,
    ), last
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002"]
    assert not (out / "model.safetensors").exists()

    monkeypatch.setattr(ckpt, "_write_bytes", original)  # space freed
    assert main([*args, "--resume"]) == 0
    assert "resuming from" in capsys.readouterr().err
    assert (out / "model.safetensors").exists()


def test_full_disk_while_writing_the_final_model_keeps_the_previous_model(
    tiny_bert, txt, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    train(_config(tiny_bert, txt, out))
    _interrupted_before_the_end(out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    from simcse.modeling import model_dir as model_files

    real_save_file = model_files.save_file

    def save_file(tensors, filename, metadata=None):
        real_save_file(tensors, filename, metadata=metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 3])
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(model_files, "save_file", save_file)
    with pytest.raises(TrainingError) as info:
        train(_config(tiny_bert, txt, out), resume=True)  # retrains steps 3-4 and writes the model again
    message = _one_line(str(info.value))
    assert "cannot write the final model (no space left on device) at step 4" in message
    assert message.endswith(f"the last good checkpoint is {out / 'checkpoints' / 'step-00000002'}")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    model_files_before = {
        k: v for k, v in before.items() if not str(k).startswith(("checkpoints", "metrics"))
    }
    assert {k: after[k] for k in model_files_before} == model_files_before
    assert not list(tmp_path.glob("run.*")), "a half-written model directory was left beside the output"


def test_copying_the_best_model_over_the_output_never_leaves_a_half_file(tmp_path, monkeypatch):
    source, target = tmp_path / "best" / "model.safetensors", tmp_path / "model.safetensors"
    source.parent.mkdir()
    source.write_bytes(b"new" * 1000)
    target.write_bytes(b"old" * 1000)
    import shutil

    def copy2(src, dst):
        Path(dst).write_bytes(Path(src).read_bytes()[:100])
        raise ENOSPC

    monkeypatch.setattr(shutil, "copy2", copy2)
    with pytest.raises(OSError):
        run_dir.replace_with_copy(source, target)
    assert target.read_bytes() == b"old" * 1000
    monkeypatch.undo()
    run_dir.replace_with_copy(source, target)
    assert target.read_bytes() == b"new" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "model.safetensors"]


# ---------------------------------------------------------------------------------------------- corruption
@pytest.mark.parametrize(
    "name", ["model.safetensors", "optimizer.pt", "rng-rank0.pt", "trainer_state.json", "manifest.json"]
)
@pytest.mark.parametrize("position", [0.0, 0.5, 0.999])
def test_a_flipped_bit_in_any_file_marks_the_checkpoint_broken(tmp_path, name, position):
    model, optimizer = _model_and_optimizer()
    older = ckpt.save_checkpoint(tmp_path, 2, model, optimizer, {"global_step": 2})
    newest = ckpt.save_checkpoint(tmp_path, 4, model, optimizer, {"global_step": 4})
    file = newest / name
    data = bytearray(file.read_bytes())
    data[int(len(data) * position)] ^= 0x04  # same size: only the checksum (or the manifest's parse) can tell
    file.write_bytes(bytes(data))
    assert ckpt.verify(newest) is not None
    with pytest.warns(UserWarning, match=f"{re.escape(str(newest))}: skipping a broken checkpoint"):
        assert ckpt.latest_checkpoint(tmp_path) == older


def test_training_resumes_from_the_previous_checkpoint_when_the_newest_has_a_flipped_bit(
    tiny_bert, txt, tmp_path, capsys
):
    out = tmp_path / "run"
    train(_config(tiny_bert, txt, out, max_steps=5, save_total_limit=3))
    _interrupted_before_the_end(out)
    older, newest = ckpt.checkpoint_dirs(out)
    assert newest.name == "step-00000004"
    file = newest / "model.safetensors"
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x10
    file.write_bytes(bytes(data))
    capsys.readouterr()
    with pytest.warns(UserWarning, match=f"{re.escape(str(newest))}: skipping a broken checkpoint"):
        result = train(_config(tiny_bert, txt, out, max_steps=5, save_total_limit=3), resume=True)
    assert f"resuming from {older} (step 2)" in capsys.readouterr().err
    assert result.global_step == 5
    # the broken checkpoint was replaced by a good one when step 4 came round again
    assert ckpt.verify(out / "checkpoints" / "step-00000004") is None


@pytest.mark.parametrize(
    "manifest",
    [
        "{",
        "[]",
        '{"files": []}',
        '{"files": {"model.safetensors": 3}}',
        '{"files": {"model.safetensors": {"size": "x", "sha256": "0"}}}',
        '{"files": {"../../outside": {"size": 1, "sha256": "0"}}}',
        '{"files": {}}',
    ],
)
def test_a_malformed_manifest_marks_the_checkpoint_broken(tmp_path, manifest):
    model, optimizer = _model_and_optimizer()
    path = ckpt.save_checkpoint(tmp_path, 2, model, optimizer, {})
    (path / "manifest.json").write_text(manifest, encoding="utf-8")
    problem = ckpt.verify(path)
    assert problem is not None and "\n" not in problem
    with pytest.warns(UserWarning, match="skipping a broken checkpoint"):
        assert ckpt.latest_checkpoint(tmp_path) is None


def test_stale_newer_checkpoints_do_not_outrank_the_resumed_run(tiny_bert, txt, tmp_path, capsys):
    """Resuming past a broken step-4 must not let step-4 survive pruning while the good ones go."""
    out = tmp_path / "run"
    train(_config(tiny_bert, txt, out, max_steps=5, save_total_limit=1))
    _interrupted_before_the_end(out)
    newest = ckpt.checkpoint_dirs(out)[-1]
    assert newest.name == "step-00000004"
    (newest / "model.safetensors").write_bytes(b"broken")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious", encoding="utf-8")
    (out / "checkpoints" / "step-00000099").symlink_to(outside, target_is_directory=True)
    # resume finds no intact checkpoint (limit 1 kept only step-4) and starts over; step-4 and the link
    # (steps from an abandoned run) must go as soon as step 2 is written, and nothing outside is touched
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(_config(tiny_bert, txt, out, max_steps=3, save_total_limit=1), resume=True)
    assert [p.name for p in ckpt.checkpoint_dirs(out)] == ["step-00000002"]
    assert (outside / "keep.txt").read_text(encoding="utf-8") == "precious"


# ---------------------------------------------------------------------------------------------- numerics
def _poison_gradient(monkeypatch, at_backward: int, value: float) -> None:
    """Replace the word-embedding gradient by ``value`` in the ``at_backward``-th backward pass (the loss
    stays finite)."""
    original = train_module.build_optimizer
    calls = {"n": 0}

    def build_optimizer(config, model, device):
        param = next(p for p in model.parameters() if p.requires_grad)

        def hook(grad):
            calls["n"] += 1
            return torch.full_like(grad, value) if calls["n"] == at_backward else grad

        param.register_hook(hook)
        return original(config, model, device)

    monkeypatch.setattr(train_module, "build_optimizer", build_optimizer)


@pytest.mark.parametrize(
    ("precision", "max_grad_norm", "value"),
    [("fp32", 1.0, float("nan")), ("bf16", 1.0, float("inf")), ("fp32", 0.0, float("inf"))],
)
def test_non_finite_gradient_with_a_finite_loss_stops_with_the_step(
    tiny_bert, txt, tmp_path, monkeypatch, precision, max_grad_norm, value
):
    _poison_gradient(monkeypatch, at_backward=3, value=value)
    out = tmp_path / "run"
    config = _config(tiny_bert, txt, out, precision=precision, max_grad_norm=max_grad_norm)
    with pytest.raises(TrainingError) as info:
        train(config)
    message = _one_line(str(info.value))
    assert re.search(r"gradient norm is (nan|inf) \(loss [0-9.]+\) at step 3; stopping", message), message
    assert [p.name for p in ckpt.checkpoint_dirs(out)] == ["step-00000002"]
    assert ckpt.verify(out / "checkpoints" / "step-00000002") is None
    assert not (out / "model.safetensors").exists()


class _RecordingScaler(torch.amp.GradScaler):
    """GradScaler starting at 2**8 (the default 2**16 overflows this tiny fp16 model by itself) that
    records the scale after each update."""

    scales: list[float] = []

    def __init__(self, device: str = "cuda", **kwargs):
        super().__init__(device, init_scale=2.0**8, **kwargs)

    def update(self, new_scale=None) -> None:
        super().update(new_scale)
        _RecordingScaler.scales.append(self.get_scale())


@pytest.mark.parametrize("poison", [False, True])
def test_fp16_overflow_is_skipped_by_the_loss_scaler_and_training_goes_on(
    tiny_bert, txt, tmp_path, monkeypatch, poison
):
    monkeypatch.setattr(torch.amp, "GradScaler", _RecordingScaler)
    monkeypatch.setattr(_RecordingScaler, "scales", [])
    if poison:
        _poison_gradient(monkeypatch, at_backward=2, value=float("inf"))
    out = tmp_path / "run"
    result = train(_config(tiny_bert, txt, out, precision="fp16", max_steps=4, save_steps=3))
    assert result.global_step == 4
    # the scaler skipped the poisoned step and halved its scale; without poison nothing overflows
    expected = [256.0, 128.0, 128.0, 128.0] if poison else [256.0] * 4
    assert _RecordingScaler.scales == expected
    saved = json.loads((out / "checkpoints" / "step-00000003" / "trainer_state.json").read_text())
    assert saved["scaler"]["scale"] == expected[2]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    assert (out / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------------- no pickle
class _Payload:
    """Unpickling this creates a file: the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _rewrite_manifest(path: Path) -> None:
    """What an attacker who can replace a file can also do: make the checksums match again."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = {"size": (path / name).stat().st_size, "sha256": sha256_file(path / name)}
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize("name", ["optimizer.pt", "rng-rank0.pt"])
def test_a_pickle_with_code_in_a_checkpoint_is_refused_and_not_run(tiny_bert, txt, tmp_path, capsys, name):
    out = tmp_path / "run"
    train(_config(tiny_bert, txt, out))
    _interrupted_before_the_end(out)
    path = out / "checkpoints" / "step-00000002"
    marker = tmp_path / "pwned"
    torch.save({"state": _Payload(marker)}, path / name)
    _rewrite_manifest(path)
    assert ckpt.verify(path) is None
    capsys.readouterr()
    code = main(["train", "--model_name_or_path", str(tiny_bert), "--train_file", str(txt), "--output_dir", str(out),
                 "--batch_size", "4", "--max_seq_len", "16", "--max_steps", "4", "--save_steps", "2", "--resume",
                 *QUIET])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"simcse: error: {path / name}: refused to load"), err
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    torch.load(path / name, weights_only=False)
    assert marker.exists()


def test_every_torch_load_in_the_package_is_weights_only():
    src = Path(__file__).resolve().parents[2] / "src" / "simcse"
    calls = []
    for file in src.rglob("*.py"):
        text = file.read_text(encoding="utf-8")
        assert "pickle.load" not in text and "allow_pickle=True" not in text, file
        for m in re.finditer(r"torch\.load\(", text):
            depth, end = 0, m.end() - 1
            for end in range(m.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            calls.append((file.name, text[m.start() : end + 1]))
    assert calls, "expected at least the checkpoint loader"
    for name, call in calls:
        assert "weights_only=True" in call, (name, call)


# ---------------------------------------------------------------------------------------------- writes stay inside
def test_a_tar_that_climbs_out_through_a_chain_of_symlinks_is_refused(tmp_path):
    """Each link alone stays inside (``up -> ..``, then ``up/up2 -> ..``); together they point above the
    extraction folder, and a file written through them would land outside it."""
    import io
    import tarfile

    from simcse.data import download

    tar_path = tmp_path / "data" / "senteval.tar"
    tar_path.parent.mkdir()
    with tarfile.open(tar_path, "w") as tar:
        for name, kind, target in [("downstream", tarfile.DIRTYPE, ""), ("downstream/up", tarfile.SYMTYPE, ".."),
                                   ("downstream/up/up2", tarfile.SYMTYPE, "..")]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
        info = tarfile.TarInfo("downstream/up/up2/evil.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"pwned"))
    final = tmp_path / "data" / "senteval" / "downstream"
    final.parent.mkdir()
    with pytest.raises(SimCSEError) as info:
        download._extract_tar(tar_path, final)
    assert "outside" in _one_line(str(info.value))
    assert not list(tmp_path.rglob("evil.txt"))
    assert not final.exists() and list(final.parent.iterdir()) == []
