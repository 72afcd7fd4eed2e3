"""Run an exported graph on padded numpy batches: ONNX Runtime's session or OpenVINO's compiled model.

Both take ``input_ids`` and ``attention_mask`` (int64, batch x length) and return ``sentence_embedding``
(float32, batch x dim). Threads: torch's intra-op thread count, so that every backend of a comparison uses
the same cores.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from simcse.core.errors import SimCSEError

OUTPUT = "sentence_embedding"
# the packages each backend imports, and the extra that installs them
EXTRAS = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "nncf", "onnx")}


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
