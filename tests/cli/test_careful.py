"""Every command as careful as ``train`` (issue 11): bad input is one line and exit 2 before any work, results
are checked before the work starts and never left half-written, and nothing the user did not name is
destroyed. Each test drives the real CLI through ``main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simcse.modeling.model_dir import EMBEDDED_MODEL
from tests.helpers import QUIET, SENTENCES, assert_one_line_error, run


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------- usage errors
def test_a_usage_error_is_one_line_naming_the_command(capsys, tiny_bert):
    code, _, err = run(capsys, ["similarity", "only one"])
    assert_one_line_error(code, err, "simcse similarity", "expected [MODEL] A B", "--help")
    code, _, err = run(capsys, ["encode", str(tiny_bert)])
    assert_one_line_error(code, err, "simcse encode", "the following arguments are required", "--help")


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_eval_batch_size_must_be_positive(capsys, tmp_path, value):
    code, _, err = run(capsys, ["eval", "--batch-size", value, "--data-dir", str(tmp_path), "--no-download"])
    assert_one_line_error(code, err, "--batch-size", "integer >= 1")


# ---------------------------------------------------------------------------------------------- eval results
@pytest.mark.parametrize("option", ["--output", "--csv"])
def test_eval_refuses_a_directory_for_its_results_before_evaluating(capsys, tmp_path, option):
    target = tmp_path / "existing"
    target.mkdir()
    data_dir = tmp_path / "no-data"  # evaluating would fail on it: the path check must come first
    code, out, err = run(capsys, ["eval", option, str(target), "--data-dir", str(data_dir), "--no-download"])
    assert_one_line_error(code, err, str(target), option, "is a directory")
    assert out == "" and list(target.iterdir()) == [] and not list(tmp_path.glob("*.tmp"))


def test_eval_refuses_a_result_path_under_a_file(capsys, tmp_path):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    target = tmp_path / "afile" / "results.json"
    code, _, err = run(
        capsys, ["eval", "--output", str(target), "--data-dir", str(tmp_path), "--no-download"]
    )
    assert_one_line_error(code, err, str(target), "--output", "is not a directory")


def test_write_json_leaves_nothing_partial(tmp_path, monkeypatch):
    from simcse.evaluation import report

    target = tmp_path / "results.json"
    target.write_text('{"old": true}\n', encoding="utf-8")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report.os, "replace", fail)
    with pytest.raises(OSError):
        report.write_json({"new": 1}, target)
    assert json.loads(target.read_text(encoding="utf-8")) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


# ---------------------------------------------------------------------------------------------- the default model
def test_default_names_the_embedded_model_everywhere(embedded_model):
    from simcse.modeling.encoder import Encoder
    from simcse.use.api import SimCSE

    assert Encoder.load("default").source == EMBEDDED_MODEL
    assert SimCSE("default").encoder.source == EMBEDDED_MODEL


@pytest.mark.parametrize("name", ["default", "-"])
def test_eval_default_is_the_embedded_model_not_a_hub_id(capsys, monkeypatch, name):
    from simcse.core.errors import SimCSEError
    from simcse.evaluation import suite

    asked = []

    def evaluate(model, **kwargs):
        asked.append(model)
        raise SimCSEError("stop here")

    monkeypatch.setattr(suite, "evaluate", evaluate)
    code, _, err = run(capsys, ["eval", name, "--quiet"])
    assert_one_line_error(code, err, "stop here")
    assert asked == [None]  # None: the embedded model


# ---------------------------------------------------------------------------------------------- encode
@pytest.mark.parametrize(
    ("value", "expected"), [("100", "exceeds"), ("0", "integer >= 1"), ("-5", "integer >= 1")]
)
def test_encode_max_length_is_checked_before_any_file(capsys, tmp_path, tiny_bert, corpus, value, expected):
    out = tmp_path / "out.npy"
    code, _, err = run(capsys, ["encode", str(tiny_bert), "--input", str(corpus), "--output", str(out),
                                "--max-length", value, "--quiet"])  # fmt: skip
    assert_one_line_error(code, err, expected)
    assert not out.exists() and not list(tmp_path.glob("out.npy*"))


def test_api_max_length_beyond_the_model_is_an_error(tiny_bert):
    from simcse.core.errors import SimCSEError
    from simcse.modeling.encoder import Encoder

    encoder = Encoder.load(str(tiny_bert), "avg")
    with pytest.raises(SimCSEError, match="exceeds"):
        encoder.encode(["a dog"], max_length=65)  # 64 positions
    with pytest.raises(SimCSEError, match="integer >= 1"):
        encoder.encode(["a dog"], max_length=0)
    with pytest.raises(SimCSEError, match="exceeds"):
        Encoder.load(str(tiny_bert), "avg", max_length=600)
    assert encoder.encode(["a dog"], max_length=64).shape == (1, 32)


# ---------------------------------------------------------------------------------------------- train
def _train(capsys, tiny_bert, corpus, out, *extra):
    return run(capsys, ["train", "--train_file", str(corpus), "--model_name_or_path", str(tiny_bert),
                        "--output_dir", str(out), "--batch_size", "4", "--max_steps", "2", "--save_steps", "0",
                        "--max_seq_len", "16", *QUIET, *extra])  # fmt: skip


@pytest.mark.parametrize("save_steps", ["0", "1"])  # without checkpoints, and with one at every step
def test_resume_on_a_finished_run_says_so_and_writes_nothing(capsys, tmp_path, tiny_bert, corpus, save_steps):
    out = tmp_path / "run"
    code, _, err = _train(capsys, tiny_bert, corpus, out, "--save_steps", save_steps)
    assert code == 0, err
    before = _files(out)
    code, _, err = _train(capsys, tiny_bert, corpus, out, "--save_steps", save_steps, "--resume")
    assert_one_line_error(code, err, str(out), "finished at step 2", "nothing to resume", "--max_steps",
                          "--overwrite_output_dir")  # fmt: skip
    assert _files(out) == before


def test_resume_with_more_steps_trains_a_finished_run_further(capsys, tmp_path, tiny_bert, corpus):
    out = tmp_path / "run"
    assert _train(capsys, tiny_bert, corpus, out, "--save_steps", "1")[0] == 0
    code, _, err = _train(capsys, tiny_bert, corpus, out, "--save_steps", "1", "--max_steps", "3", "--resume")
    assert code == 0, err
    assert "(step 1)" in err  # the last step is the saved model, not a checkpoint: step 2 is replayed
    assert json.loads((out / "simcse.json").read_text())["step"] == 3


def test_overwrite_refuses_a_directory_that_is_not_a_run(capsys, tmp_path, tiny_bert, corpus):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work", encoding="utf-8")
    for flag in (["--overwrite_output_dir", "true"], ["--resume"]):
        code, _, err = _train(capsys, tiny_bert, corpus, out, *flag)
        assert_one_line_error(code, err, str(out), "not a simcse training run", flag[0])
        assert _files(out) == {"thesis.tex": b"years of work"}


@pytest.mark.parametrize("dev_eval", ["true", "false"])  # the best model copied up, or the last one
def test_overwrite_removes_only_what_simcse_wrote(capsys, tmp_path, tiny_bert, corpus, data_dir, dev_eval):
    out = tmp_path / "run"
    args = ("--save_steps", "1", "--dev_eval", dev_eval, "--data_dir", str(data_dir))
    assert _train(capsys, tiny_bert, corpus, out, *args)[0] == 0
    written = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "simcse.json", "README.md", "checkpoints"} <= written
    assert written <= set(json.loads((out / ".simcse-files").read_text()))
    (out / "notes.md").write_text("my analysis", encoding="utf-8")
    (out / "plots").mkdir()
    (out / "plots" / "fig.png").write_bytes(b"png")
    marker = b"from the first run"
    (out / "checkpoints" / "marker").write_bytes(marker)
    code, _, err = _train(capsys, tiny_bert, corpus, out, *args, "--overwrite_output_dir", "true")
    assert code == 0, err
    assert "kept 2 entries simcse did not write: notes.md, plots" in err
    assert (out / "notes.md").read_text(encoding="utf-8") == "my analysis"
    assert (out / "plots" / "fig.png").read_bytes() == b"png"
    assert not (out / "checkpoints" / "marker").exists(), "the first run's checkpoints must go"
    assert "notes.md" not in json.loads((out / ".simcse-files").read_text())


# ---------------------------------------------------------------------------------------------- export
@pytest.mark.parametrize("inside", [False, True])
def test_export_refuses_its_own_source(capsys, tmp_path, tiny_bert, inside):
    source = tmp_path / "model"
    model_args = ["export", str(tiny_bert), "--to", "hf", str(source), "--pooler", "avg"]
    assert run(capsys, model_args)[0] == 0
    before = _files(source)
    target = source / "sub" if inside else source
    code, _, err = run(capsys, ["export", str(source), "--to", "hf", str(target), "--overwrite"])
    assert_one_line_error(code, err, "its own source")
    assert _files(source) == before


# ---------------------------------------------------------------------------------------------- search / API
@pytest.fixture
def index_dir(capsys, tmp_path, tiny_bert, corpus) -> Path:
    out = tmp_path / "idx"
    assert (
        run(
            capsys,
            ["index", "build", str(tiny_bert), "--input", str(corpus), "--output", str(out), "--quiet"],
        )[0]
        == 0
    )
    return out


def test_search_with_another_model_says_what_to_do_in_cli_words(capsys, tmp_path, index_dir):
    from tests.helpers import make_tiny_bert

    other = make_tiny_bert(tmp_path / "other", seed=7)  # same dimension, other weights
    capsys.readouterr()
    code, _, err = run(capsys, ["search", str(index_dir), "a dog", "--model", str(other)])
    assert_one_line_error(code, err, "built with another model", "--model", "model.json")
    assert "check_model" not in err


def test_search_model_option_names_the_model_of_an_index_without_model_json(capsys, index_dir, tiny_bert):
    (index_dir / "model.json").unlink()
    code, _, err = run(capsys, ["search", str(index_dir), "a dog", "--top-k", "2"])
    assert_one_line_error(code, err, "model.json", "--model")
    code, out, err = run(
        capsys, ["search", str(index_dir), "a dog", "--top-k", "2", "--model", str(tiny_bert)]
    )
    assert code == 0, err
    assert len(out.strip().splitlines()) == 2


def test_api_mistakes_are_clear_errors(tiny_bert):
    from simcse.core.errors import SimCSEError
    from simcse.use.api import SimCSE

    model = SimCSE(str(tiny_bert), pooler="avg", device="cpu")
    with pytest.raises(SimCSEError, match="no index to add to"):
        model.add_to_index(["a dog"])  # used to build an index silently
    assert model.index is None
    with pytest.raises(SimCSEError, match="got NoneType"):
        model.encode(None)
    # the original tool's positional device works, as it does there
    assert model.encode(["a dog"], "cpu").shape == (1, model.dim)
    model.build_index(SENTENCES, use_faiss=False)
    assert isinstance(model.search("a dog", "cpu"), list)
    with pytest.raises(SimCSEError, match="takes the device second.*got 3.*by keyword"):
        model.search("a dog", 3)  # a top_k where the original tool takes the device
    with pytest.raises(SimCSEError, match="threshold must be a number"):
        model.search("a dog", "cpu", "high")
    with pytest.raises(SimCSEError, match="top_k must be an integer >= 1"):
        model.search("a dog", top_k=0)
    with pytest.raises(SimCSEError, match="max_length must be an integer >= 1"):
        model.encode("a dog", max_length=0)
    assert len(model.search("a dog", device="cpu", threshold=None, top_k=3)) == 3


# ---------------------------------------------------------------------------------------------- messages
def test_one_row_is_too_few_and_the_message_says_why(capsys, tmp_path, tiny_bert):
    one = tmp_path / "one.txt"
    one.write_text("a single sentence\n", encoding="utf-8")
    code, _, err = _train(capsys, tiny_bert, one, tmp_path / "run")
    assert_one_line_error(code, err, f"{one}: 1 row: a contrastive batch needs at least 2 rows")
    three = tmp_path / "three.txt"
    three.write_text("one\ntwo\nthree\n", encoding="utf-8")
    code, _, err = _train(capsys, tiny_bert, three, tmp_path / "run3")  # batch 4: one batch of 3
    assert code == 0, err


def test_a_run_without_dev_evaluation_says_so(capsys, tmp_path, tiny_bert, corpus):
    code, _, err = _train(capsys, tiny_bert, corpus, tmp_path / "run")
    assert code == 0
    assert "the model after step 2; no dev evaluation" in err and "None" not in err


def test_index_build_names_an_empty_input_file(capsys, tmp_path, tiny_bert):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    code, _, err = run(
        capsys, ["index", "build", str(tiny_bert), "--input", str(empty), "--out", str(tmp_path / "i")]
    )
    assert_one_line_error(code, err, f"{empty}: input file is empty")
    assert "training" not in err


# ---------------------------------------------------------------------------------------------- optional MODEL
def test_similarity_and_index_build_take_the_embedded_model_when_model_is_left_out(
    capsys, tmp_path, corpus, embedded_model
):
    a, b = "A man plays a guitar.", "Someone plays an instrument."
    code, plain, err = run(capsys, ["similarity", a, b])
    assert code == 0, err
    assert run(capsys, ["similarity", "default", a, b])[1] == plain
    assert 0.3 < float(plain) <= 1.0
    out = tmp_path / "idx"
    code, _, err = run(capsys, ["index", "build", "--input", str(corpus), "--output", str(out), "--quiet"])
    assert code == 0, err
    code, found, err = run(capsys, ["search", str(out), "a dog", "--top-k", "1"])
    assert code == 0, err
    assert found.strip()
