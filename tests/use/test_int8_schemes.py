"""int8 exports by CPU class: the scheme each --target-cpu (or the detected CPU) gets, what the graph then
holds, what ``simcse_export.json`` records, the guard's refusal with the next scheme to try, and (slow) the
embedded model's int8 exports on this CPU against its STS-B dev score."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simcse.core.errors import SimCSEError
from simcse.use.export import export_model
from simcse.use.export_guard import GuardReport, enforce
from tests.helpers import SENTENCES

pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime)")


def _int8_weights(path) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]


@pytest.mark.parametrize(("target", "scheme"), [("avx2", "dynamic-reduce-range"), ("avx512_vnni", "dynamic"),
                                                ("amx", "dynamic")])  # fmt: skip
def test_each_target_cpu_gets_its_onnx_scheme_and_the_export_records_it(tiny_bert4, tmp_path, target, scheme):
    out = export_model(str(tiny_bert4), tmp_path / "o", "onnx", pooler="avg", quantize="int8", target_cpu=target,
                       sts_check=False)  # fmt: skip
    info = json.loads((out / "onnx" / "simcse_export.json").read_text())
    assert info["int8"]["scheme"] == scheme and info["int8"]["target_cpu"] == target
    assert info["int8"]["chosen_by"] == f"the default for {target} CPUs"
    assert info["checked_on"]["int8"] == "avx2" and "model" in info["checked_on"]  # the suite's flags: none
    assert info["guard"]["min_cosine_each"] == 0.9
    weights = _int8_weights(out / "onnx" / "model_qint8.onnx")
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    # reduce_range: 7-bit weights, so that AVX2's u8 x s8 pair sums cannot saturate; else the full 8 bits
    assert largest <= 64 if scheme == "dynamic-reduce-range" else largest == 127


def test_the_detected_cpu_picks_the_scheme(tiny_bert4, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMCSE_CPU_FLAGS", "avx2 avx512f avx512_vnni")
    out = export_model(
        str(tiny_bert4), tmp_path / "v", "onnx", pooler="avg", quantize="int8", sts_check=False
    )
    info = json.loads((out / "onnx" / "simcse_export.json").read_text())
    assert info["int8"]["scheme"] == "dynamic" and info["int8"]["target_cpu"] == "avx512_vnni"
    assert info["checked_on"]["flags"] == ["avx2", "avx512_vnni", "avx512f"]
    assert info["checked_on"]["class"] == "avx512_vnni"


def test_openvino_gets_weight_only_int8_on_avx2_and_static_int8_with_amx(tiny_bert4, tmp_path):
    pytest.importorskip("openvino", reason="the openvino extra")
    import openvino as ov

    calibration = tmp_path / "calib.txt"
    calibration.write_text("\n".join(SENTENCES * 3) + "\n", encoding="utf-8")
    ops = {}
    for target in ("avx2", "amx"):
        out = export_model(str(tiny_bert4), tmp_path / target, "openvino", pooler="avg", quantize="int8",
                           target_cpu=target, calibration=calibration if target == "amx" else None,
                           sts_check=False)  # fmt: skip
        info = json.loads((out / "openvino" / "simcse_export.json").read_text())
        model = ov.Core().read_model(str(out / "openvino" / "openvino_model_qint8_quantized.xml"))
        ops[info["int8"]["scheme"]] = {op.get_type_name() for op in model.get_ops()}
        types = {
            op.get_element_type().get_type_name()
            for op in model.get_ops()
            if op.get_type_name() == "Constant"
        }
        assert "i8" in types  # int8 weights either way
    assert "FakeQuantize" not in ops["weights"]  # activations stay fp32
    assert "FakeQuantize" in ops["static"]


def _bad_then_real(monkeypatch, bad_calls: int):
    """The guard's measurement replaced by a far-off one for its first ``bad_calls`` calls."""
    from simcse.use import graph_export

    real, calls = graph_export.compare, []

    def fake(reference, candidate, senteval_dir, *args):
        calls.append(candidate.info["int8"]["scheme"])
        if len(calls) <= bad_calls:
            return GuardReport(8, 0.97, 0.70, None, None)
        return real(reference, candidate, senteval_dir, *args)

    monkeypatch.setattr(graph_export, "compare", fake)
    return calls


def test_a_refused_default_scheme_is_followed_by_the_next(tiny_bert4, tmp_path, monkeypatch):
    calls = _bad_then_real(monkeypatch, 1)
    out = export_model(str(tiny_bert4), tmp_path / "o", "onnx", pooler="avg", quantize="int8",
                       target_cpu="avx512_vnni", sts_check=False)  # fmt: skip
    assert calls == ["dynamic", "dynamic-reduce-range"]
    info = json.loads((out / "onnx" / "simcse_export.json").read_text())
    assert info["int8"]["scheme"] == "dynamic-reduce-range" and info["guard"]["cosine_min"] > 0.9
    assert info["int8"]["chosen_by"] == "the default for avx512_vnni CPUs"


def test_a_refused_named_scheme_says_which_to_try_and_writes_nothing(tiny_bert4, tmp_path, monkeypatch):
    _bad_then_real(monkeypatch, 10)
    with pytest.raises(SimCSEError, match=r"turns some sentences away from the fp32 model \(least cosine "
                       r"0\.7000, below 0\.9.*nothing was written; try --int8-scheme dynamic-reduce-range"):  # fmt: skip
        export_model(str(tiny_bert4), tmp_path / "o", "onnx", pooler="avg", quantize="int8",
                     int8_scheme="dynamic", sts_check=False)  # fmt: skip
    with pytest.raises(SimCSEError, match=r"scheme dynamic-reduce-range\) turns .*; try --to openvino "
                       r"--quantize int8, or the fp32 export"):  # fmt: skip
        export_model(str(tiny_bert4), tmp_path / "o", "onnx", pooler="avg", quantize="int8", sts_check=False)
    assert not (tmp_path / "o").exists() and list(tmp_path.iterdir()) == []


def test_the_least_cosine_is_checked_when_asked():
    report = GuardReport(100, 0.99, 0.85, None, None)
    enforce(report, 0.5, 0.95, "x")  # without min_worst: only the mean
    with pytest.raises(SimCSEError, match=r"^x turns some sentences away .*0\.8500, below 0\.9.*; try y$"):
        enforce(report, 0.5, 0.95, "x", min_worst=0.9, advice="try y")


def test_the_cli_takes_the_target_cpu_and_refuses_a_foreign_scheme(tiny_bert4, tmp_path, capsys):
    from simcse.cli import main

    out = tmp_path / "o"
    argv = ["export", str(tiny_bert4), "--to", "onnx", str(out), "--quantize", "int8", "--no-sts-check"]
    assert main([*argv, "--target-cpu", "amx", "--pooler", "avg"]) == 0
    assert json.loads((out / "onnx" / "simcse_export.json").read_text())["int8"]["scheme"] == "dynamic"
    assert "(int8 scheme dynamic for amx CPUs, checked on this avx2 CPU)" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--int8-scheme", "static"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["simcse: error: --int8-scheme must be one of --to onnx's (dynamic, dynamic-reduce-range), "
                   "got 'static'"]  # fmt: skip


# ---------------------------------------------------------------------------------------------- real model
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_the_embedded_models_int8_export_holds_on_this_cpu(
    embedded_model, data_dir, tmp_path, monkeypatch, backend
):
    """The scheme this CPU gets passes the guard on STS-B dev, within 0.5 points of fp32 (measured on an
    AVX2-only CPU: onnx dynamic-reduce-range -0.03, openvino weights -0.01)."""
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra")
    monkeypatch.delenv("SIMCSE_CPU_FLAGS")  # this CPU, as a user's export sees it
    out = export_model(None, tmp_path / backend, backend, quantize="int8", data_dir=data_dir,
                       optimize="O2" if backend == "onnx" else None)  # fmt: skip
    info = json.loads((out / backend / "simcse_export.json").read_text())
    assert info["int8"]["chosen_by"].startswith("the default")
    assert info["guard"]["drop"] < 0.5 and info["guard"]["cosine_min"] >= 0.9


@pytest.mark.slow
def test_static_int8_is_refused_on_a_cpu_without_vnni_with_the_scheme_to_try(
    embedded_model, data_dir, tmp_path, monkeypatch
):
    """NNCF's static int8 of all-MiniLM-L6-v2 on an AVX2-only CPU: STS-B dev holds, but some sentences' cosine
    to fp32 falls to 0.70 (0.69 with the overflow fix), so the guard refuses it and names the weight-only
    scheme."""
    pytest.importorskip("openvino", reason="the openvino extra")
    from simcse.core.hardware import int8_target

    monkeypatch.delenv("SIMCSE_CPU_FLAGS")
    if int8_target() != "avx2":
        pytest.skip("this CPU has VNNI or AMX, where static int8 is the default")
    with pytest.raises(
        SimCSEError, match=r"scheme static\) turns some sentences away .*try --int8-scheme weights"
    ):
        export_model(
            None, tmp_path / "s", "openvino", quantize="int8", int8_scheme="static", data_dir=data_dir
        )
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------------------------- backend auto
def test_backend_auto_takes_the_models_export_where_its_scheme_holds(
    tiny_bert4, tmp_path, monkeypatch, capsys
):
    from simcse.cli import main
    from simcse.modeling.graph_encoder import choose_backend
    from simcse.use.api import SimCSE

    assert choose_backend(None) == (
        "torch",
        "backend auto: torch (no onnx / openvino export of the model to take)",
    )
    portable = export_model(str(tiny_bert4), tmp_path / "p", "onnx", pooler="avg", quantize="int8",
                            sts_check=False)  # fmt: skip
    model = SimCSE(str(portable), backend="auto")
    assert model.backend == "onnx"
    assert model.precision_line.startswith(
        "backend auto: onnx int8, the fastest on this no-avx2 CPU of torch, "
    )
    assert model.precision_line.endswith(": backend onnx, model_qint8.onnx in int8 + fp32")
    np.testing.assert_allclose(model.encode(SENTENCES).numpy(),
                               SimCSE(str(portable), backend="onnx").encode(SENTENCES).numpy())  # fmt: skip
    # a full 8-bit scheme saturates without VNNI: auto passes over it here, takes it where VNNI is
    vnni = export_model(str(tiny_bert4), tmp_path / "v", "onnx", pooler="avg", quantize="int8", target_cpu="amx",
                        sts_check=False)  # fmt: skip
    backend, line = choose_backend(str(vnni))
    assert backend == "torch" and line.endswith("; passed over onnx (int8 scheme dynamic needs VNNI or AMX))")
    monkeypatch.setenv("SIMCSE_CPU_FLAGS", "avx2 avx512f avx512_vnni")
    assert choose_backend(str(vnni))[0] == "onnx"
    monkeypatch.setenv("SIMCSE_CPU_FLAGS", "none")
    text = tmp_path / "in.txt"
    text.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    argv = ["encode", str(portable), "--input", str(text), "--output", str(tmp_path / "e.npy"), "--quiet"]
    assert main([*argv, "--backend", "auto"]) == 0
    assert "backend auto: onnx int8" in capsys.readouterr().err
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), model.encode(SENTENCES).numpy(), atol=1e-6)


def test_backend_auto_prefers_what_was_measured_fastest_on_the_cpu_class():
    from simcse.modeling.graph_encoder import auto_order

    assert auto_order("avx2")[0] == "onnx int8" and auto_order("avx2")[-1] == "openvino int8"
    assert auto_order("avx512_vnni+bf16")[0] == "openvino int8"
    assert auto_order("amx+bf16") == auto_order("no-avx2") == auto_order("avx2")  # not measured: avx2's order
    for cpu in ("avx2", "avx512_vnni+bf16"):
        assert sorted(auto_order(cpu)) == [
            "onnx fp32",
            "onnx int8",
            "openvino fp32",
            "openvino int8",
            "torch",
        ]
