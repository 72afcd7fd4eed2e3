"""Using a trained encoder from the command line: similarity, encode, index build, search, export, serve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simcse.modeling.encoder import Encoder
from simcse.use.api import SimCSE
from tests.helpers import SENTENCES, assert_one_line_error, make_tiny_bert, run

HERE = Path(__file__).parent


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path


def test_similarity_prints_the_cosine(capsys, tiny_bert):
    code, out, err = run(
        capsys, ["similarity", str(tiny_bert), "--pooler", "avg", SENTENCES[0], SENTENCES[1]]
    )
    assert code == 0, err
    expected = SimCSE(str(tiny_bert), pooler="avg", device="cpu").similarity(SENTENCES[0], SENTENCES[1])
    assert out == f"{expected:.4f}\n"


@pytest.mark.integration
def test_similarity_with_the_embedded_model(capsys, embedded_model):
    code, out, err = run(
        capsys, ["similarity", "default", "A man is playing a guitar.", "A man plays the guitar."]
    )
    assert code == 0, err
    assert 0.7 < float(out) <= 1.0


def test_similarity_needs_two_sentences(capsys, tiny_bert):
    for words in (["only one"], [str(tiny_bert), "a", "b", "c"]):
        code, _, err = run(capsys, ["similarity", *words])
        assert code == 2 and "expected [MODEL] A B" in err and err.count("\n") == 1, err


def test_encode_writes_the_matrix(tmp_path, capsys, tiny_bert, corpus):
    out = tmp_path / "emb.npy"
    code, stdout, err = run(capsys, ["encode", str(tiny_bert), "--input", str(corpus), "--output", str(out),
                                     "--pooler", "avg", "--no-normalize", "--shard-size", "5", "--quiet"])  # fmt: skip
    assert code == 0, err
    assert stdout == "" and err.startswith(
        f"wrote {out}: {len(SENTENCES)} x 32 float32; precision fp32 (auto: "
    )
    assert err.count("\n") == 1
    expected = Encoder.load(str(tiny_bert), "avg").encode(SENTENCES)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)


def test_index_build_then_search_from_another_directory(tmp_path, capsys, tiny_bert, corpus, monkeypatch):
    model_copy = tmp_path / "models" / "tiny"
    model_copy.parent.mkdir()
    model_copy.symlink_to(tiny_bert, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, ["index", "build", "models/tiny", "--input", str(corpus), "--out", "idx",
                                  "--index", "flat", "--pooler", "avg", "--quiet"])  # fmt: skip
    assert code == 0, err
    assert out.startswith(f"indexed {len(SENTENCES)} sentences (32-dim, flat) in ") and out.endswith(
        " s: idx\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the index recorded an absolute model path
    index_dir = str(tmp_path / "idx")
    # the model and its pooler (avg, an override here) come from the index's model.json
    code, out, err = run(capsys, ["search", index_dir, SENTENCES[3], "--top-k", "3"])
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    score, sentence = lines[0].split("\t")
    assert sentence == SENTENCES[3] and abs(float(score) - 1.0) < 1e-3
    scores = [float(line.split("\t")[0]) for line in lines]
    assert scores == sorted(scores, reverse=True)

    code, out, err = run(capsys, ["search", index_dir, SENTENCES[0], SENTENCES[5], "--json", "--top-k", "2",
                                  "--pooler", "avg"])  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)
    assert [r["query"] for r in rows] == [SENTENCES[0], SENTENCES[5]]
    assert [r["results"][0]["sentence"] for r in rows] == [SENTENCES[0], SENTENCES[5]]
    assert all(len(r["results"]) == 2 for r in rows)

    code, out, err = run(capsys, ["search", index_dir, SENTENCES[0], "--threshold", "0.999", "--json",
                                  "--pooler", "avg"])  # fmt: skip
    assert code == 0, err
    assert [h["sentence"] for h in json.loads(out)[0]["results"]] == [SENTENCES[0]]


def test_search_with_another_model_is_refused(tmp_path, capsys, tiny_bert, corpus):
    other = make_tiny_bert(tmp_path / "other", seed=3)
    idx = tmp_path / "idx"
    code, _, err = run(capsys, ["index", "build", str(tiny_bert), "--input", str(corpus), "--out", str(idx),
                                "--pooler", "avg", "--quiet"])  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, ["search", str(idx), "a dog", "--model", str(other), "--pooler", "avg"])
    assert_one_line_error(code, err, str(idx), "built with another model")


def test_index_build_refuses_a_non_empty_out(tmp_path, capsys, tiny_bert, corpus):
    out = tmp_path / "idx"
    out.mkdir()
    (out / "keep.txt").write_text("precious", encoding="utf-8")
    code, _, err = run(capsys, ["index", "build", str(tiny_bert), "--input", str(corpus), "--out", str(out)])
    assert_one_line_error(code, err, str(out), "not empty", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_search_errors(tmp_path, capsys):
    code, _, err = run(capsys, ["search", str(tmp_path / "nope"), "query"])
    assert_one_line_error(code, err, str(tmp_path / "nope"), "index directory not found")
    (tmp_path / "idx").mkdir()
    code, _, err = run(capsys, ["search", str(tmp_path / "idx"), "query"])
    assert_one_line_error(code, err, str(tmp_path / "idx" / "model.json"), "--model")
    (tmp_path / "idx" / "model.json").write_text(
        json.dumps({"source": str(tmp_path / "gone")}), encoding="utf-8"
    )
    code, _, err = run(capsys, ["search", str(tmp_path / "idx"), "query"])
    assert_one_line_error(code, err, "cannot load the model it was built with", "model directory not found",
                          "pass --model")  # fmt: skip


def test_export_round_trip(tmp_path, capsys, tiny_bert):
    st = pytest.importorskip("sentence_transformers")
    out = tmp_path / "exported"
    code, stdout, err = run(capsys, ["export", str(tiny_bert), "--to", "sentence-transformers", str(out)])
    assert code == 0, err
    assert stdout == f"exported {tiny_bert} as sentence-transformers: {out}\n"
    ours = SimCSE(str(tiny_bert), device="cpu").encode(SENTENCES)
    theirs = st.SentenceTransformer(str(out), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    capsys.readouterr()
    code, _, err = run(capsys, ["export", str(tiny_bert), "--to", "hf", str(out)])
    assert_one_line_error(code, err, str(out), "not empty", "--overwrite")
    code, _, err = run(capsys, ["export", str(tiny_bert), "--to", "hf", str(out), "--overwrite"])
    assert code == 0, err
    assert not (out / "modules.json").exists() and (out / "config.json").exists()


def test_help_does_not_import_the_server():
    code = ("import sys; from simcse.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'simcse.serve') if m in sys.modules))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"


def test_serve_without_its_dependencies_is_one_line(capsys, monkeypatch):
    import simcse

    monkeypatch.setitem(sys.modules, "simcse.serve", None)  # import simcse.serve raises ImportError
    monkeypatch.delattr(simcse, "serve", raising=False)  # (an earlier test may have imported it)
    code, _, err = run(capsys, ["serve", "--port", "0"])
    assert_one_line_error(code, err, "simcse serve is unavailable", "pip install 'simcse-toolkit[serve]'")


def test_serve_help_lists_the_server_options(capsys):
    pytest.importorskip("simcse.serve")
    code, out, _ = run(capsys, ["serve", "--help"])
    assert code == 0
    assert "--port" in out


def test_encode_with_world_size_one_needs_no_process_group(tmp_path, capsys, tiny_bert, corpus, monkeypatch):
    """``torchrun --nproc_per_node 1`` sets WORLD_SIZE=1: a plain single-process run."""
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    out = tmp_path / "emb.npy"
    code, _, err = run(
        capsys, ["encode", str(tiny_bert), "--input", str(corpus), "--output", str(out), "--quiet"]
    )
    assert code == 0, err
    assert np.load(out).shape == (len(SENTENCES), 32)
    import torch.distributed as dist

    assert not dist.is_initialized()
