"""Run an exported graph on padded numpy batches: ONNX Runtime's session or OpenVINO's compiled model.

Both take ``input_ids`` and ``attention_mask`` (int64, batch x length) and return ``sentence_embedding``
(float32, batch x dim). Threads: torch's intra-op thread count, so that every backend of a comparison uses
the same cores.

The int8 schemes of ``simcse export --quantize int8`` are named here too (:data:`INT8_SCHEMES`), with the
CPU classes each computes correctly on and the one each class gets by default, so that the exporter and the
loader (``backend="auto"``, :func:`~simcse.modeling.graph_encoder.choose_backend`) agree on them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from simcse.core.errors import SimCSEError

OUTPUT = "sentence_embedding"
# the packages each backend imports, and the extra that installs them
EXTRAS = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "nncf", "onnx")}

# The int8 schemes of ``simcse export --quantize int8``, by backend. On a CPU without VNNI the int8 kernels
# multiply u8 x s8 with AVX2's vpmaddubsw, whose 16-bit pair sums saturate (255 * 127 * 2 > 32767): 7-bit
# weights (reduce_range, NNCF's overflow fix) or int8 weights with fp32 arithmetic avoid it.
INT8_SCHEMES = {
    "onnx": {
        "dynamic": "ONNX Runtime's dynamic int8: 8-bit weights per channel, activations quantised at run time",
        "dynamic-reduce-range": "ONNX Runtime's dynamic int8 with reduce_range: 7-bit weights per channel, so "
        "that AVX2's saturating u8 x s8 multiply-add cannot overflow",
    },
    "openvino": {
        "static": "NNCF's post-training quantisation: weights and activations, calibrated",
        "static-overflow-fix": "NNCF's post-training quantisation with overflow_fix=ENABLE: 7-bit weights in "
        "every layer, for AVX2's saturating multiply-add",
        "weights": "NNCF's weight-only int8 (nncf.compress_weights, int8_sym): int8 weights, fp32 arithmetic",
    },
}
# the scheme --quantize int8 picks for each --target-cpu class (simcse.core.hardware.INT8_TARGETS)
DEFAULT_SCHEMES = {
    "onnx": {"avx2": "dynamic-reduce-range", "avx512_vnni": "dynamic", "amx": "dynamic"},
    "openvino": {"avx2": "weights", "avx512_vnni": "static", "amx": "static"},
}
# the schemes whose arithmetic cannot saturate on any CPU class; the others need VNNI or AMX
PORTABLE_SCHEMES = ("dynamic-reduce-range", "static-overflow-fix", "weights")
# what a refused scheme's message advises next
FALLBACK_SCHEMES = {"dynamic": "dynamic-reduce-range", "static": "weights", "static-overflow-fix": "weights"}


def pick_int8_scheme(backend: str, target: str, scheme: str | None = None) -> str:
    """The int8 scheme of a ``backend`` export for CPUs of class ``target``: ``scheme`` when given (checked
    against the backend's), else the class's default (:data:`DEFAULT_SCHEMES`).

    Args:
        backend: ``onnx`` or ``openvino``.
        target: a key of :data:`simcse.core.hardware.INT8_TARGETS`.
        scheme: a key of ``INT8_SCHEMES[backend]``, or None for the default.

    Returns:
        The scheme's name.

    Raises:
        SimCSEError: ``scheme`` is not one of the backend's (the message lists them).
    """
    if scheme is None:
        return DEFAULT_SCHEMES[backend][target]
    if scheme not in INT8_SCHEMES[backend]:
        raise SimCSEError(
            f"--int8-scheme {scheme!r} is not one of --to {backend}'s: {', '.join(INT8_SCHEMES[backend])}"
        )
    return scheme


def scheme_holds_on(scheme: str | None, target: str) -> bool:
    """Whether a graph quantised with ``scheme`` (None: not quantised) computes as checked on a CPU of class
    ``target``: a portable scheme everywhere, the others only with VNNI or AMX."""
    return scheme is None or scheme in PORTABLE_SCHEMES or target != "avx2"


def require(backend: str, *modules: str) -> None:
    """Import the packages of ``backend`` (or just ``modules``), else one line naming the extra to install."""
    for name in modules or EXTRAS[backend]:
        try:
            importlib.import_module(name)
        except ImportError:
            raise SimCSEError(
                f"the {backend} backend needs the package {name}: pip install 'simcse-toolkit[{backend}]'"
            ) from None


def _threads() -> int:
    import torch

    return torch.get_num_threads()


class OnnxRunner:
    """An ONNX Runtime session on the CPU (all graph optimisations on)."""

    backend = "onnx"

    def __init__(self, path: Path):
        require("onnx", "onnxruntime")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle pool threads sleep instead of spinning: a spinning worker holds a core that the tokenizer, the
        # caller's other threads or another process needs (measured on 2 busy AVX2 cores, all-MiniLM-L6-v2
        # int8, alternating processes: 1.2-1.3x the sentences/s of the spinning default)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise SimCSEError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        names = [o.name for o in self.session.get_outputs()]
        if OUTPUT not in names:
            raise SimCSEError(
                f"{path}: the graph has no {OUTPUT!r} output (outputs: {', '.join(names)}); "
                "export it with simcse export --to onnx"
            )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.precision = "fp32"

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        return self.session.run([OUTPUT], feed)[0]


class OpenVinoRunner:
    """OpenVINO's model compiled for the CPU, with its inference precision set (``f32`` or ``bf16``)."""

    backend = "openvino"

    def __init__(self, path: Path, precision: str = "fp32"):
        require("openvino", "openvino")
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:
            raise SimCSEError(f"{path}: not a loadable OpenVINO model ({str(exc).splitlines()[0]})") from None
        names = [name for output in model.outputs for name in output.get_names()]
        if OUTPUT not in names:
            raise SimCSEError(
                f"{path}: the model has no {OUTPUT!r} output (outputs: {', '.join(names)}); "
                "export it with simcse export --to openvino"
            )
        hint = {"fp32": "f32", "bf16": "bf16"}.get(precision)
        if hint is None:
            raise SimCSEError(f"the openvino backend runs in fp32 or bf16, not {precision}")
        config = {
            "INFERENCE_PRECISION_HINT": hint,
            "INFERENCE_NUM_THREADS": _threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.inputs = {name for i in self.compiled.inputs for name in i.get_names()}
        self.output = self.compiled.output(OUTPUT)
        self.precision = precision

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        result = self.request.infer(feed)
        return np.asarray(result[self.output], dtype=np.float32)
