"""Encoders that run outside PyTorch: a model exported as an ONNX graph (run by ONNX Runtime) or as an
OpenVINO model, for CPU inference.

An export directory is the model's own simcse / sentence-transformers directory plus ``onnx/`` or
``openvino/`` with the graph, named as sentence-transformers names its backend files (``onnx/model.onnx``,
``onnx/model_O3.onnx``, ``onnx/model_qint8.onnx``, ``openvino/openvino_model.xml``,
``openvino/openvino_model_qint8_quantized.xml``), so ``SentenceTransformer(DIR, backend="onnx")`` finds it,
and a ``simcse_export.json`` beside the graph (what was exported, and the quality check it passed). The graph
takes ``input_ids`` and ``attention_mask`` and gives ``sentence_embedding`` (the pooler and the MLP are in
the graph) and ``last_hidden_state`` (what sentence-transformers' backends read, before its own modules).

Modules: :mod:`.export` writes a directory (torch's ONNX exporter, ONNX Runtime's optimiser and int8
quantiser, OpenVINO's converter and NNCF's quantiser), :mod:`.runners` runs a graph,
:mod:`.graph_encoder` encodes sentences with it as :class:`~simcse.modeling.encoder.Encoder` does (the same
tokenisation, length-sorted batches), :mod:`.guard` checks an export against the PyTorch model.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from simcse.errors import SimCSEError

BACKENDS = ("torch", "onnx", "openvino")
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


def check_backend(backend: str | None) -> str:
    """``backend`` (None: torch), refused unless one of :data:`BACKENDS`."""
    backend = backend or "torch"
    if backend not in BACKENDS:
        raise SimCSEError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def load_encoder(
    name_or_path: str | os.PathLike | None,
    pooler: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    **torch_options: Any,
):
    """The encoder of ``name_or_path``: an :class:`~simcse.modeling.encoder.Encoder` for ``backend`` torch
    (``torch_options`` go to :meth:`Encoder.load`), a :class:`~.graph_encoder.GraphEncoder` for an export
    directory with ``backend`` onnx or openvino (``precision``: OpenVINO's inference precision)."""
    backend = check_backend(backend)
    if backend == "torch":
        from simcse.modeling.encoder import Encoder

        return Encoder.load(name_or_path, pooler, **torch_options)
    from simcse.backends.graph_encoder import GraphEncoder

    if pooler is not None:
        raise SimCSEError(f"--pooler cannot change an exported {backend} model: its pooler is in the graph; "
                          "export the model again with that pooler")  # fmt: skip
    unsupported = sorted(k for k, v in torch_options.items() if v is not None and k != "max_length")
    if unsupported:
        raise SimCSEError(f"the {backend} backend does not take {', '.join(unsupported)}")
    return GraphEncoder.load(name_or_path, backend, precision, max_length=torch_options.get("max_length"))
