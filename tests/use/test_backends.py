"""ONNX / OpenVINO exports: round trips on a tiny model, the loaders that read them, the quality guard's
refusal, and the one-line errors for missing extras and invalid option combinations."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from simcse.core.errors import SimCSEError
from simcse.modeling.encoder import Encoder
from simcse.modeling.graph_encoder import GraphEncoder
from simcse.modeling.graph_runners import require
from simcse.use.api import SimCSE
from simcse.use.export import export_model
from simcse.use.export_guard import GuardReport, enforce
from tests.helpers import SENTENCES

pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime)")


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.fixture(scope="module")
def onnx_dir(tiny_bert4, tmp_path_factory):
    return export_model(str(tiny_bert4), tmp_path_factory.mktemp("x") / "onnx", "onnx", pooler="cls",
                        sts_check=False)  # fmt: skip


@pytest.mark.parametrize("pooler", ["cls", "cls_before_pooler", "avg", "avg_first_last"])
def test_an_onnx_export_encodes_as_the_torch_model_with_the_pooler_and_mlp_in_the_graph(
    tiny_bert4, tmp_path, pooler
):
    out = export_model(str(tiny_bert4), tmp_path / "o", "onnx", pooler=pooler, sts_check=False)
    info = json.loads((out / "onnx" / "simcse_export.json").read_text())
    assert info["file"] == "model.onnx" and (out / "onnx" / "model.onnx").is_file()
    assert info["pooler"] == pooler and info["mlp"] == (pooler == "cls")
    assert info["guard"]["cosine_mean"] > 0.9999 and info["guard"]["stsb_dev_exported"] is None
    torch_model = Encoder.load(str(tiny_bert4), pooler)
    graph = GraphEncoder.load(out, "onnx")
    # other batch sizes and lengths than the ones the graph was traced with
    for batch in (1, 3, 64):
        np.testing.assert_allclose(graph.encode(SENTENCES, batch), torch_model.encode(SENTENCES), atol=1e-5)
    # and the directory is still the model's own: torch loads it too
    np.testing.assert_allclose(SimCSE(str(out), device="cpu").encode(SENTENCES).numpy(),
                               SimCSE(str(tiny_bert4), pooler=pooler, device="cpu").encode(SENTENCES).numpy(),
                               atol=1e-5)  # fmt: skip


def test_the_api_encodes_searches_and_truncates_with_an_onnx_export(onnx_dir, tiny_bert4):
    model = SimCSE(str(onnx_dir), backend="onnx")
    reference = SimCSE(str(tiny_bert4), pooler="cls", device="cpu", precision="fp32")
    assert model.precision_line == "backend onnx, model.onnx in fp32"
    np.testing.assert_allclose(
        model.encode(SENTENCES).numpy(), reference.encode(SENTENCES).numpy(), atol=1e-5
    )
    long = " ".join(["word"] * 200)
    np.testing.assert_allclose(model.encode(long, max_length=16).numpy(),
                               reference.encode(long, max_length=16).numpy(), atol=1e-5)  # fmt: skip
    model.build_index(SENTENCES, index="flat")
    hits = model.search(SENTENCES[2], top_k=1)
    assert hits[0][0] == SENTENCES[2]
    assert model.encoder.fingerprint() == SimCSE(str(onnx_dir), backend="onnx").encoder.fingerprint()


@pytest.mark.parametrize(("optimize", "quantize", "name"), [("O2", None, "model_O2.onnx"), ("O3", None, "model_O3.onnx"),
                                                             (None, "int8", "model_qint8.onnx"),
                                                             ("O1", "int8", "model_O1_qint8.onnx")])  # fmt: skip
def test_optimised_and_int8_onnx_exports(tiny_bert4, tmp_path, optimize, quantize, name):
    out = export_model(str(tiny_bert4), tmp_path / "o", "onnx", pooler="avg", optimize=optimize, quantize=quantize,
                       sts_check=False)  # fmt: skip
    assert [p.name for p in (out / "onnx").glob("*.onnx")] == [name]
    graph = GraphEncoder.load(out, "onnx")
    assert graph.precision == ("int8 + fp32" if quantize else "fp32")
    cosine = _cosine(graph.encode(SENTENCES), Encoder.load(str(tiny_bert4), "avg").encode(SENTENCES))
    assert cosine.min() > (0.99 if quantize else 0.9999)
    if quantize:
        import onnx

        ops = {node.op_type for node in onnx.load(str(out / "onnx" / name)).graph.node}
        assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}


@pytest.mark.slow
def test_openvino_exports_in_fp32_and_int8(tiny_bert4, tmp_path):
    pytest.importorskip("openvino", reason="the openvino extra")
    calibration = tmp_path / "calib.txt"
    calibration.write_text("\n".join(SENTENCES * 3) + "\n", encoding="utf-8")
    torch_model = Encoder.load(str(tiny_bert4), "cls")
    fp32 = export_model(str(tiny_bert4), tmp_path / "ov", "openvino", pooler="cls", sts_check=False)
    assert (fp32 / "openvino" / "openvino_model.xml").is_file() and (
        fp32 / "openvino" / "openvino_model.bin"
    ).is_file()
    assert not (fp32 / "onnx").exists() and not (fp32 / ".graph").exists()
    graph = GraphEncoder.load(fp32, "openvino", "fp32")
    np.testing.assert_allclose(graph.encode(SENTENCES), torch_model.encode(SENTENCES), atol=1e-4)
    assert GraphEncoder.load(fp32, "openvino", "bf16").precision == "bf16"
    for scheme in ("static", "static-overflow-fix", "weights"):
        int8 = export_model(str(tiny_bert4), tmp_path / f"ov8-{scheme}", "openvino", pooler="cls", quantize="int8",
                            calibration=calibration if scheme != "weights" else None, int8_scheme=scheme,
                            sts_check=False)  # fmt: skip
        assert (int8 / "openvino" / "openvino_model_qint8_quantized.xml").is_file()
        model = SimCSE(str(int8), backend="openvino", precision="fp32")
        assert model.precision_line == "backend openvino, openvino_model_qint8_quantized.xml in int8 + fp32"
        assert _cosine(model.encode(SENTENCES).numpy(), torch_model.encode(SENTENCES)).min() > 0.95


def test_the_export_is_checked_on_stsb_dev_and_records_it(tiny_bert4, tmp_path, data_dir, capsys):
    out = export_model(str(tiny_bert4), tmp_path / "o", "onnx", pooler="avg", data_dir=data_dir)
    guard = json.loads((out / "onnx" / "simcse_export.json").read_text())["guard"]
    assert guard["sentences"] > 2000 and guard["max_drop"] == 0.1
    assert abs(guard["stsb_dev_reference"] - guard["stsb_dev_exported"]) < 0.01
    assert "STS-B dev" in capsys.readouterr().err


def test_an_export_that_breaks_the_embeddings_is_refused_with_nothing_written(
    tiny_bert4, tmp_path, monkeypatch
):
    from simcse.modeling import graph_runners as runners

    real = runners.OnnxRunner.__call__
    rng = np.random.default_rng(0)
    monkeypatch.setattr(runners.OnnxRunner, "__call__",
                        lambda self, ids, mask: real(self, ids, mask) + rng.normal(0, 5, (ids.shape[0], 32)))  # fmt: skip
    out = tmp_path / "o"
    with pytest.raises(SimCSEError, match=r"too far from the fp32 model \(mean cosine .*nothing was written"):
        export_model(str(tiny_bert4), out, "onnx", pooler="avg", sts_check=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_an_stsb_drop_beyond_the_limit_is_refused():
    report = GuardReport(100, 0.999, 0.99, 80.0, 79.2)
    enforce(report, 1.0, 0.99, "x")  # 0.8 points: within 1
    with pytest.raises(SimCSEError, match=r"x loses 0\.80 STS-B dev points \(more than --max-drop 0\.5"):
        enforce(report, 0.5, 0.99, "x")


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, tiny_bert4, tmp_path, capsys):
    from simcse.cli import main

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(
        SimCSEError,
        match=r"^the openvino backend needs the package openvino: pip install 'simcse-toolkit\[openvino\]'$",
    ):
        require("openvino")
    assert main(["export", str(tiny_bert4), "--to", "openvino", str(tmp_path / "o"), "--no-sts-check"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "simcse: error: the openvino backend needs the package openvino: pip install 'simcse-toolkit[openvino]'"
    ]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("to", "options", "message"), [
    ("openvino", {"optimize": "O2"}, "--optimize is for --to onnx"),
    ("hf", {"quantize": "int8"}, "are for --to onnx or openvino"),
    ("onnx", {"optimize": "O4", "quantize": "int8"}, "exclude each other"),
    ("onnx", {"optimize": "O5"}, "--optimize must be one of O1, O2, O3, O4"),
    ("onnx", {"optimize": "O4"}, "no CUDA provider"),
    ("onnx", {"quantize": "int8", "target_cpu": "avx3"}, "--target-cpu must be one of avx2, avx512_vnni, amx"),
    ("onnx", {"quantize": "int8", "int8_scheme": "weights"},
     r"--int8-scheme must be one of --to onnx's \(dynamic, dynamic-reduce-range\), got 'weights'"),
    ("openvino", {"int8_scheme": "weights"}, "add --quantize int8"),
    ("hf", {"target_cpu": "amx"}, "--target-cpu, --int8-scheme, --max-drop and --calibration are for"),
    ("openvino", {"quantize": "int8", "target_cpu": "avx2", "calibration": "x.txt"},
     r"--calibration is for openvino's static int8 schemes .* this export's is weights"),
])  # fmt: skip
def test_invalid_export_options_are_refused_before_anything_is_written(
    tiny_bert4, tmp_path, to, options, message
):
    with pytest.raises(SimCSEError, match=message):
        export_model(str(tiny_bert4), tmp_path / "o", to, pooler="avg", sts_check=False, **options)
    assert not (tmp_path / "o").exists()


def test_backends_refuse_what_they_cannot_load(onnx_dir, tiny_bert4):
    with pytest.raises(SimCSEError, match="no openvino export here \\(it has a onnx export\\)"):
        SimCSE(str(onnx_dir), backend="openvino")
    with pytest.raises(
        SimCSEError, match="no onnx export here; write one with: simcse export MODEL --to onnx DIR"
    ):
        SimCSE(str(tiny_bert4), backend="onnx")
    with pytest.raises(SimCSEError, match="loads an export directory"):
        SimCSE(None, backend="onnx")
    with pytest.raises(SimCSEError, match="--pooler cannot change an exported onnx model"):
        SimCSE(str(onnx_dir), backend="onnx", pooler="avg")
    with pytest.raises(SimCSEError, match="runs the exported graph as it is"):
        SimCSE(str(onnx_dir), backend="onnx", precision="bf16")
    with pytest.raises(SimCSEError, match="unknown backend 'tensorrt'"):
        SimCSE(str(onnx_dir), backend="tensorrt")


def test_corpus_encoding_evaluation_and_the_cli_take_the_backend(onnx_dir, tmp_path, tiny_bert4, capsys):
    from simcse.cli import main
    from simcse.use.corpus import encode_corpus

    text = tmp_path / "in.txt"
    text.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    out = encode_corpus(str(onnx_dir), text, tmp_path / "e.npy", backend="onnx")
    expected = SimCSE(str(tiny_bert4), pooler="cls", device="cpu", precision="fp32").encode(SENTENCES).numpy()
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    assert main(["similarity", str(onnx_dir), "a cat", "a dog", "--backend", "onnx"]) == 0
    captured = capsys.readouterr()
    assert "backend onnx, model.onnx in fp32" in captured.err
    torch_value = SimCSE(str(tiny_bert4), pooler="cls", device="cpu", precision="fp32").similarity(
        "a cat", "a dog"
    )
    assert abs(float(captured.out) - torch_value) < 1e-3


# sentence-transformers' onnx / openvino backends need optimum, which needs transformers < 4.58 (this
# environment has 5.x): they are checked in the environments `make bench-peers` builds, when present.
_ST_LOAD = """
import json, sys
import numpy as np
from sentence_transformers import SentenceTransformer
spec = json.loads(sys.argv[1])
model = SentenceTransformer(spec["dir"], backend=spec["backend"], device="cpu",
                            model_kwargs={"file_name": spec["file"]})
np.save(spec["out"], model.encode(spec["sentences"]))
"""


def _peer_python(backend: str) -> str:
    import os
    from pathlib import Path

    variable = f"SIMCSE_PEER_PYTHON_{backend.upper()}"
    default = Path(__file__).resolve().parents[2] / f".venv-peer-{backend}" / "bin" / "python"
    python = os.environ.get(variable) or (str(default) if default.is_file() else None)
    if not python:
        pytest.skip(f"sentence-transformers' {backend} backend: `make bench-peers` or {variable}=PYTHON")
    return python


@pytest.mark.parametrize(("backend", "pooler", "quantize", "file"), [
    ("onnx", "cls", None, "onnx/model.onnx"),
    ("onnx", "avg", "int8", "onnx/model_qint8.onnx"),
    pytest.param("openvino", "cls", None, "openvino/openvino_model.xml", marks=pytest.mark.slow),
    pytest.param("openvino", "avg", None, "openvino/openvino_model.xml", marks=pytest.mark.slow),
])  # fmt: skip
def test_sentence_transformers_loads_the_export_with_its_own_backend(
    tiny_bert4, tmp_path, backend, pooler, quantize, file
):
    import subprocess

    python = _peer_python(backend)
    out = export_model(str(tiny_bert4), tmp_path / "x", backend, pooler=pooler, quantize=quantize,
                       sts_check=False)  # fmt: skip
    spec = {"dir": str(out), "backend": backend, "file": file, "sentences": SENTENCES,
            "out": str(tmp_path / "theirs.npy")}  # fmt: skip
    done = subprocess.run([python, "-c", _ST_LOAD, json.dumps(spec)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = np.load(tmp_path / "theirs.npy")
    if quantize:  # theirs runs the int8 graph too: the same graph, the same numbers
        ours = GraphEncoder.load(out, backend).encode(SENTENCES)
    else:
        ours = Encoder.load(str(tiny_bert4), pooler).encode(SENTENCES)
    np.testing.assert_allclose(theirs, ours, atol=1e-3 if backend == "openvino" else 1e-4)


def test_openvino_int8_calibrates_on_stsb_train_without_the_sts_check(tiny_bert4, tmp_path, data_dir):
    pytest.importorskip("openvino", reason="the openvino extra")
    out = export_model(str(tiny_bert4), tmp_path / "ov8", "openvino", pooler="avg", quantize="int8",
                       int8_scheme="static", data_dir=data_dir, sts_check=False)  # fmt: skip
    info = json.loads((out / "openvino" / "simcse_export.json").read_text())
    assert info["quantize"] == "int8" and info["guard"]["stsb_dev_exported"] is None
    assert info["int8"]["scheme"] == "static" and info["int8"]["chosen_by"] == "--int8-scheme"


def test_openvino_int8_without_calibration_data_names_the_options(tiny_bert4, tmp_path, monkeypatch):
    pytest.importorskip("openvino", reason="the openvino extra")
    monkeypatch.setenv("SIMCSE_DATA_DIR", str(tmp_path / "nothing"))
    with pytest.raises(
        SimCSEError,
        match=r"calibrates on STS-B train sentences: give --data-dir .* or --calibration FILE, or use "
        r"--int8-scheme weights",
    ):
        export_model(str(tiny_bert4), tmp_path / "ov8", "openvino", pooler="avg", quantize="int8",
                     target_cpu="amx", sts_check=False)  # fmt: skip
    assert not (tmp_path / "ov8").exists()
