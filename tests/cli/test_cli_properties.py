"""Every subcommand driven with random flag values (issue 11): whatever the values, the command exits 0 or
prints one ``simcse: error:`` line and exits 2; no traceback, and nothing partial is left behind (no
temporary file or directory; after an error, no file the command wrote).

The flags come from the real parsers (and, for ``train``, from :class:`TrainConfig`'s fields), so a flag
added later is covered without touching this file. Values mix cheap valid ones with the usual mistakes:
zero, negatives, non-numbers, overflow, NaN, an existing directory where a file is expected and so on.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simcse.cli import build_parser, main
from simcse.training.config import TrainConfig
from tests.helpers import SENTENCES

# Values every flag may get; {s} is the example's sandbox directory.
GENERIC = ["0", "1", "2", "-1", "-5", "abc", "", "1e309", "nan", "3.5", "true", "{s}/new", "{s}/existing",
           "{s}/a_file.txt", "{s}/a_file.txt/under", "{s}/missing/deeper"]  # fmt: skip
# Cheap valid values for the flags that need one to reach the work at all.
GOOD = {
    "--input": ["{s}/corpus.txt"],
    "--output": ["{s}/out.npy", "{s}/out", "{s}/out.json"],
    "--out": ["{s}/out"],
    "--csv": ["{s}/out.csv"],
    "--tasks": ["STSBenchmark", "SICKRelatedness", "STS12,nonsense", "geometry"],
    "--mode": ["dev", "test", "fasttest"],
    "--batch-size": ["8", "64"],
    "--max-length": ["16", "600"],
    "--top-k": ["1", "3"],
    "--pooler": ["cls", "avg", "avg_first_last", "bogus"],
    "--model": ["{tiny}"],
    "--port": ["0"],
    "--host": ["127.0.0.1"],
}
TRAIN_GOOD = {
    "batch_size": ["4"],
    "max_seq_len": ["16"],
    "pooler": ["cls", "avg", "avg_top2"],
    "objective": ["unsup", "sup", "bogus"],
    "learning_rate": ["3e-5", "0.1"],
    "temperature": ["0.05", "0"],
    "train_file": ["{s}/corpus.txt", "{s}/triples.csv"],
}
# Kept out of random values: the ones that would make a run long or reach the network on purpose.
TRAIN_SKIP = {"data_dir", "final_eval", "eval_batch_size", "model_name_or_path", "output_dir", "hub_model_id"}

POSITIONALS = {
    "eval": [["{tiny}"], ["{tiny}", "{tiny}"], ["{s}/missing"], ["{s}/a_file.txt"]],
    "similarity": [["{tiny}", "a dog", "a cat"], ["a dog", "a cat"], ["{s}/missing", "a", "b"], ["x"]],
    "encode": [["{tiny}"], [], ["{s}/a_file.txt"]],
    "index build": [["{tiny}"], ["{s}/existing"]],
    "search": [["{index}", "a dog"], ["{s}/missing", "q"], ["{s}/existing", "q"], ["{index}"]],
    "export": [["{tiny}", "{s}/exported"], ["{tiny}", "{tiny}"], ["{s}/missing", "{s}/exported"]],
    "data download": [["senteval"], ["bogus"], []],
    "serve": [["{tiny}"], [], ["{s}/missing"]],
}
BASE_FLAGS = {"eval": ["--tasks", "STSBenchmark", "--mode", "dev"]}  # cheap unless a drawn flag says else
LEFTOVERS = re.compile(r"(\.tmp|\.partial|\.building|\.shards)$")


def _options(command: str) -> dict[str, argparse.Action]:
    """The optional flags of a subcommand, from its parser."""
    parser = build_parser(serve_options=command == "serve")
    for name in command.split():
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return {
        action.option_strings[0]: action
        for action in parser._actions
        if action.option_strings and action.dest not in ("help",)
    }


def _valid(action: argparse.Action, flag: str) -> list[list[str]]:
    """Values the flag accepts (its cheap good values, its choices, or its default)."""
    if action.nargs == 0:
        return [[flag]]
    if flag in GOOD:
        return [[flag, v] for v in GOOD[flag]]
    if action.choices:
        return [[flag, str(c)] for c in action.choices]
    if isinstance(action.default, (int, float, str)) and not isinstance(action.default, bool):
        return [[flag, str(action.default)]]
    return []


def _hostile(action: argparse.Action, flag: str) -> list[list[str]]:
    return [[flag]] if action.nargs == 0 else [[flag, v] for v in [*GENERIC, "bogus"]]


def _flag_strategy(valid: list[list[str]], hostile: list[list[str]]) -> st.SearchStrategy:
    """Up to three flags, each a good value or a mistake (about half and half), so that both the work and
    the errors are reached."""
    return st.lists(st.one_of(st.sampled_from(valid), st.sampled_from(hostile)), max_size=3)


def _train_flags() -> tuple[list[list[str]], list[list[str]]]:
    valid, hostile = [], []
    for field in dataclasses.fields(TrainConfig):
        if field.name in TRAIN_SKIP:
            continue
        flag = "--" + field.name
        default = field.default
        good = list(TRAIN_GOOD.get(field.name, []))
        if isinstance(default, bool):
            good += ["true", "false"]
        elif isinstance(default, (int, float, str)) and default != "":
            good.append(str(default))
        valid += [[flag, v] for v in good]
        hostile += [[flag, v] for v in GENERIC]
    return valid, hostile


def _fill(args: list[str], sandbox: Path, tiny: Path, index: Path) -> list[str]:
    names = {"{s}": str(sandbox), "{tiny}": str(tiny), "{index}": str(index)}
    out = []
    for arg in args:
        for key, value in names.items():
            arg = arg.replace(key, value)
        out.append(arg)
    return out


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}


def _sandbox(base: Path) -> Path:
    sandbox = Path(tempfile.mkdtemp(dir=base))
    (sandbox / "existing").mkdir()
    (sandbox / "a_file.txt").write_text("not a model\n", encoding="utf-8")
    (sandbox / "corpus.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    rows = ["sent0,sent1,hard_neg"] + [
        f"{a},{b},{c}" for a, b, c in zip(SENTENCES, SENTENCES[1:], SENTENCES[2:])
    ]
    (sandbox / "triples.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return sandbox


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's exit, and --help / --version
            code = e.code if isinstance(e.code, int) else 2
    return code, err.getvalue()


@contextlib.contextmanager
def _inside(directory: Path):
    """``contextlib.chdir`` (Python >= 3.11) for 3.10."""
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


def _check(argv: list[str], sandbox: Path, errors_per_item: bool = False) -> None:
    """``errors_per_item``: ``data download A B`` reports each failed dataset on its own line (and still
    fetches the others); every other command stops at its first error.

    The command runs inside the sandbox, so that a relative path drawn as a value (``--csv 2``) lands
    there, is checked like the rest and is removed with it (not in the directory pytest was started in)."""
    before = _snapshot(sandbox)
    with _inside(sandbox):
        code, err = _run(argv)
    shown = f"simcse {' '.join(argv)}\n{err[-3000:]}"
    assert "Traceback" not in err, shown
    assert code in (0, 2), shown
    if code == 2:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert lines and lines[-1].startswith("simcse: error: "), shown
        errors = [line for line in lines if "error" in line.lower()]
        assert all(line.startswith("simcse: error: ") for line in errors), shown
        assert errors_per_item or len(errors) == 1, shown
        after = _snapshot(sandbox)
        created = sorted(set(after) - set(before))
        changed = sorted(k for k in before if k in after and after[k] != before[k])
        assert not created and not changed, f"{shown}\nwritten before the error: {created} {changed}"
    left = [str(p) for p in sandbox.rglob("*") if LEFTOVERS.search(p.name)]
    assert not left, f"{shown}\nleft behind: {left}"


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_bert) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("cli-properties")
    index = base / "index"
    corpus = base / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    code, err = _run(
        ["index", "build", str(tiny_bert), "--input", str(corpus), "--output", str(index), "--quiet"]
    )
    assert code == 0, err
    return base, tiny_bert, index


@pytest.fixture(autouse=True)
def _no_real_server(monkeypatch):
    """``serve`` with valid flags would serve forever; stop it where uvicorn would start."""
    uvicorn = pytest.importorskip("uvicorn")
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)


PROPERTY = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


@pytest.mark.parametrize("command", [c for c in POSITIONALS if c != "data download"] + ["data download"])
@PROPERTY
@given(data=st.data())
def test_any_flag_values_give_exit_0_or_one_error_line_and_nothing_partial(work, command, data):
    base, tiny, index = work
    options = _options(command)
    valid = [v for flag, action in options.items() for v in _valid(action, flag)]
    hostile = [v for flag, action in options.items() for v in _hostile(action, flag)]
    positionals = data.draw(st.sampled_from(POSITIONALS[command]), label="positionals")
    flags = data.draw(_flag_strategy(valid, hostile), label="flags")
    for flag in (flag for flag, action in options.items() if action.required):
        if data.draw(st.integers(0, 9), label=f"give {flag}"):  # nine times in ten
            flags.insert(0, data.draw(st.sampled_from(_valid(options[flag], flag)), label=flag))
    sandbox = _sandbox(base)
    base_flags = BASE_FLAGS.get(command, [])
    argv = [*command.split(), *positionals, *base_flags, *[v for pair in flags for v in pair]]
    argv = _fill(argv, sandbox, tiny, index)
    if command in ("encode", "index build") and "--quiet" in options:
        argv.append("--quiet")
    try:
        _check(argv, sandbox, errors_per_item=command == "data download")
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)


@PROPERTY
@given(data=st.data())
def test_any_train_flag_values_give_exit_0_or_one_error_line_and_nothing_partial(work, data):
    base, tiny, _ = work
    config = data.draw(st.sampled_from([None, "good.yaml", "bad.yaml", "missing.yaml"]), label="config")
    flags = data.draw(_flag_strategy(*_train_flags()), label="flags")
    resume = data.draw(st.integers(0, 3), label="--resume") == 0
    sandbox = _sandbox(base)
    (sandbox / "good.yaml").write_text("batch_size: 4\nmax_seq_len: 16\n", encoding="utf-8")
    (sandbox / "bad.yaml").write_text("batch_size: [4\n", encoding="utf-8")
    argv = ["train", *([f"{{s}}/{config}"] if config else []), "--model_name_or_path", "{tiny}",
            "--train_file", "{s}/corpus.txt", "--output_dir", "{s}/run", "--batch_size", "4", "--max_steps", "2",
            "--max_seq_len", "16", "--dev_eval", "false", "--final_eval", "none", "--progress_bar", "false",
            "--tensorboard", "false", *[v for pair in flags for v in pair], *(["--resume"] if resume else [])]  # fmt: skip
    try:
        _check(_fill(argv, sandbox, tiny, sandbox), sandbox)
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)
