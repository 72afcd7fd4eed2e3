"""The ``simcse`` command: one-line errors with exit status 2 and nothing written; a tiny run from flags alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simcse.training.config import TrainConfig
from tests.helpers import QUIET, SENTENCES, assert_one_line_error, run


@pytest.fixture
def train_txt(tmp_path) -> Path:
    path = tmp_path / "train.txt"
    path.write_text("\n".join(SENTENCES * 2) + "\n", encoding="utf-8")
    return path


def bad_input(tmp_path: Path, case: str) -> tuple[list[str], list[str]]:
    """(arguments before the common flags, strings the error must name) for each kind of bad input."""
    if case == "missing file":
        path = tmp_path / "missing.txt"
        return ["--train_file", str(path)], [f"{path}: training file not found"]
    if case == "empty file":
        path = tmp_path / "empty.txt"
        path.write_bytes(b"")
        return ["--train_file", str(path)], [f"{path}: training file is empty"]
    if case == "column count":
        path = tmp_path / "pairs.csv"
        path.write_text("sent0,sent1\na man,a person\na dog,an animal,a cat\n", encoding="utf-8")
        return ["--train_file", str(path)], [f"{path}:3: expected 2 columns, found 3"]
    if case == "undecodable":
        path = tmp_path / "latin1.txt"
        path.write_bytes(b"caf\xc3\xa9\nna\xefve\xe9\n")
        return ["--train_file", str(path)], [f"{path}:2: not valid UTF-8"]
    if case == "header only":
        path = tmp_path / "header.csv"
        path.write_text("sent0,sent1,hard_neg\n", encoding="utf-8")
        return ["--train_file", str(path)], [f"{path}: has a header but no rows"]
    if case == "unknown flag":
        return ["--train_file", "x.txt", "--learning_rat", "1e-5"], [
            "unknown option --learning_rat",
            "learning_rate",
        ]
    if case == "bad value":
        return ["--train_file", "x.txt", "--batch_size", "many"], ["batch_size must be int"]
    if case == "invalid combination":
        return ["--train_file", "x.txt", "--mlp_only_train", "true", "--pooler", "avg"], [
            "mlp_only_train",
            "pooler",
        ]
    if case == "gradient accumulation":
        return ["--train_file", "x.txt", "--gradient_accumulation_steps", "4"], [
            "gradient_accumulation_steps",
            "GradCache",
        ]
    if case == "unknown yaml key":
        path = tmp_path / "recipe.yaml"
        path.write_text("train_file: x.txt\ntemprature: 0.05\n", encoding="utf-8")
        return [str(path)], [f"{path}: unknown config key 'temprature'", "temperature"]
    if case == "invalid yaml":
        path = tmp_path / "recipe.yaml"
        path.write_text("train_file: x.txt\nbatch_size: [64\n", encoding="utf-8")
        return [str(path)], [f"{path}:3: invalid YAML"]
    raise AssertionError(case)


CASES = ["missing file", "empty file", "column count", "undecodable", "header only", "unknown flag", "bad value",
         "invalid combination", "gradient accumulation", "unknown yaml key", "invalid yaml"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, tiny_bert, case):
    args, names = bad_input(tmp_path, case)
    out_dir = tmp_path / "runs" / "out"
    code, _, err = run(capsys, ["train", *args, "--model_name_or_path", str(tiny_bert), "--output_dir", str(out_dir),
                                *QUIET])  # fmt: skip
    assert_one_line_error(code, err, *names)
    assert not out_dir.exists()
    assert not (tmp_path / "runs").exists()


def test_bad_input_in_a_subprocess_exits_2(tmp_path, tiny_bert):
    args, names = bad_input(tmp_path, "column count")
    out_dir = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "simcse.cli", "train", *args, "--model_name_or_path", str(tiny_bert), "--output_dir",
           str(out_dir), *QUIET]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, *names)
    assert proc.stdout == ""
    assert not out_dir.exists()


def test_a_reader_that_stops_early_gets_no_traceback():
    # ``simcse recipes | grep -q NAME`` closes the pipe after the first match: the CI base check did this
    shell = f"{sys.executable} -m simcse.cli recipes | head -c 1 > /dev/null; echo ${{PIPESTATUS[0]}} >&2"
    proc = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] in {"0", "141"}


def test_non_empty_output_dir_without_resume_is_refused_and_untouched(tmp_path, capsys, tiny_bert, train_txt):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("precious", encoding="utf-8")
    code, _, err = run(capsys, ["train", "--train_file", str(train_txt), "--model_name_or_path", str(tiny_bert),
                                "--output_dir", str(out_dir), *QUIET])  # fmt: skip
    assert_one_line_error(code, err, str(out_dir), "not empty", "--resume", "--overwrite_output_dir")
    assert [p.name for p in out_dir.iterdir()] == ["keep.txt"]
    assert (out_dir / "keep.txt").read_text(encoding="utf-8") == "precious"


def test_train_help_lists_every_config_key(capsys):
    code, out, _ = run(capsys, ["train", "--help"])
    assert code == 0
    keys = TrainConfig.field_names()
    for key in keys:
        assert f"--{key.replace('_', '-')} " in out, key  # one vocabulary: dashes (underscores still work)
    assert "--resume" in out
    assert "construction:" not in out and "validation:" not in out  # method comments are not option groups


def test_eval_missing_data_dir_without_download(tmp_path, capsys):
    data_dir = tmp_path / "nodata"
    code, _, err = run(capsys, ["eval", "--data-dir", str(data_dir), "--no-download", "--quiet"])
    expected = data_dir / "senteval" / "downstream"
    assert_one_line_error(code, err, str(expected), f"simcse data download senteval --dir {data_dir}")
    assert not data_dir.exists()


def test_data_download_unknown_name_is_rejected_by_argparse(tmp_path, capsys):
    code, out, err = run(capsys, ["data", "download", "bogus", "--dir", str(tmp_path / "d")])
    assert code == 2
    assert "invalid choice: 'bogus'" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_train_from_flags_alone_end_to_end(tmp_path, capsys, tiny_bert, train_txt):
    out_dir = tmp_path / "model"
    args = ["train", "--train_file", str(train_txt), "--model-name-or-path", str(tiny_bert), "--output_dir",
            str(out_dir), "--batch_size", "8", "--max_seq_len=16", "--max_steps", "3", *QUIET]  # fmt: skip
    code, _, err = run(capsys, args)
    assert code == 0, err
    assert "Traceback" not in err
    for name in (
        "model.safetensors",
        "modules.json",
        "simcse.json",
        "README.md",
        "train_config.yaml",
        "metrics.jsonl",
    ):
        assert (out_dir / name).is_file(), name
    saved = TrainConfig.from_yaml(out_dir / "train_config.yaml")
    assert (saved.train_file, saved.batch_size, saved.max_seq_len, saved.max_steps) == (
        str(train_txt),
        8,
        16,
        3,
    )
    meta = json.loads((out_dir / "simcse.json").read_text(encoding="utf-8"))
    assert meta["step"] == 3
    records = [
        json.loads(line) for line in (out_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert records and records[-1]["step"] == 3 and records[-1]["kind"] == "train"


# ---------------------------------------------------------------------------------------------- using a model
def use_case(tmp_path: Path, model: Path, case: str) -> tuple[list[str], list[str]]:
    """(arguments, strings the one-line error must name) for bad input to the model-using subcommands."""
    text = tmp_path / "in.txt"
    text.write_text("a man plays\na dog runs\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    nowhere = tmp_path / "no-model"
    if case == "encode missing input":
        missing = tmp_path / "missing.txt"
        return ["encode", str(model), "--input", str(missing), "--output", str(out)], [
            f"{missing}: input file not found"
        ]
    if case == "encode not utf-8":
        text.write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
        return ["encode", str(model), "--input", str(text), "--output", str(out)], [
            f"{text}:2: not valid UTF-8"
        ]
    if case == "encode existing output":
        out.write_bytes(b"precious")
        return ["encode", str(model), "--input", str(text), "--output", str(out)], [
            f"{out}: already exists",
            "--overwrite",
        ]
    if case == "encode bad model":
        return ["encode", str(nowhere), "--input", str(text), "--output", str(out)], [
            f"{nowhere}: model directory not found"
        ]
    if case == "similarity bad model":
        return ["similarity", str(nowhere), "a", "b"], [f"{nowhere}: model directory not found"]
    if case == "similarity model is a file":
        return ["similarity", str(text), "a", "b"], [f"{text}: is a file"]
    if case == "index build missing input":
        missing = tmp_path / "missing.txt"
        return ["index", "build", str(model), "--input", str(missing), "--out", str(tmp_path / "idx")], [
            f"{missing}: input file not found"
        ]
    if case == "export bad model":
        return ["export", str(nowhere), "--to", "hf", str(tmp_path / "exp")], [
            f"{nowhere}: model directory not found"
        ]
    if case == "search not an index":
        (tmp_path / "idx").mkdir()
        from simcse.modeling.encoder import Encoder

        fingerprint = Encoder.load(str(model)).fingerprint()
        described = {"source": str(model), "dim": 32, "fingerprint": fingerprint}
        (tmp_path / "idx" / "model.json").write_text(json.dumps(described), encoding="utf-8")
        return ["search", str(tmp_path / "idx"), "query"], [str(tmp_path / "idx" / "index.json"), "not found"]
    if case == "eval whiten-dim alone":
        return ["eval", str(model), "--whiten-dim", "8", "--quiet"], ["--whiten-dim needs --whiten"]
    if case == "eval whiten-dim too large":
        if not os.environ.get("SIMCSE_DATA_DIR"):
            pytest.skip("STS-B dev needs SIMCSE_DATA_DIR (make test sets it)")
        return [
            "eval",
            str(model),
            "--whiten",
            "self",
            "--whiten-dim",
            "999",
            "--tasks",
            "STSBenchmark",
            "--mode",
            "dev",
            "--quiet",
        ], ["--whiten-dim must be in 1..32 (the embedding size), got 999"]
    raise AssertionError(case)


USE_CASES = ["encode missing input", "encode not utf-8", "encode existing output", "encode bad model",
             "similarity bad model", "similarity model is a file", "index build missing input", "export bad model",
             "search not an index", "eval whiten-dim alone", "eval whiten-dim too large"]  # fmt: skip


@pytest.mark.parametrize("case", USE_CASES)
def test_model_commands_bad_input_is_one_line_exit_2(tmp_path, capsys, tiny_bert, case):
    args, names = use_case(tmp_path, tiny_bert, case)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(capsys, args)
    assert_one_line_error(code, err, *names)
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    if case == "encode existing output":
        assert (tmp_path / "out.npy").read_bytes() == b"precious"


def test_encode_refuses_another_models_shards_in_one_line(tmp_path, capsys, tiny_bert):
    from tests.helpers import make_tiny_bert

    text = tmp_path / "in.txt"
    text.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    shards = tmp_path / "out.npy.shards"
    shards.mkdir()
    manifest = {"version": 1, "input": {}, "model": {"fingerprint": "0123", "source": "x"}, "settings": {},
                "shard_size": 5, "lines": 12, "dim": 32, "shards": []}  # fmt: skip
    (shards / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    other = make_tiny_bert(tmp_path / "m", seed=5)
    capsys.readouterr()
    code, _, err = run(capsys, ["encode", str(other), "--input", str(text), "--output", str(out), "--quiet"])
    assert_one_line_error(code, err, f"{shards / 'manifest.json'}: left by a run with a different", "model.fingerprint",
                          "--overwrite")  # fmt: skip
    assert not out.exists() and json.loads((shards / "manifest.json").read_text(encoding="utf-8")) == manifest
    code, _, err = run(capsys, ["encode", str(other), "--input", str(text), "--output", str(out), "--quiet",
                                "--overwrite"])  # fmt: skip
    assert code == 0, err
    assert out.is_file() and not shards.exists()
