"""Loading an encoder for a backend: an :class:`~simcse.modeling.encoder.Encoder` for torch, a
:class:`~simcse.modeling.graph_encoder.GraphEncoder` for a directory that ``simcse export`` wrote for onnx or
openvino (:mod:`simcse.use.graph_export` describes that directory)."""

from __future__ import annotations

import os
from typing import Any

from simcse.core.errors import SimCSEError
from simcse.core.precision_options import BACKENDS
from simcse.modeling.sentence_encoder import SentenceEncoder


def check_backend(backend: str | None) -> str:
    """``backend`` (None: torch), refused unless one of :data:`BACKENDS`."""
    backend = backend or "torch"
    if backend not in BACKENDS:
        raise SimCSEError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def load_encoder(
    model: str | os.PathLike | SentenceEncoder | None,
    pooler: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    **torch_options: Any,
) -> SentenceEncoder:
    """The encoder of ``model``, wherever an encoder is accepted (the API, the evaluator, corpus encoding):

    - an encoder object is used as it is: ``pooler`` may only repeat its own pooler, ``max_length`` must
      fit it, and ``backend`` must be torch (a graph is loaded from its directory);
    - a name or path (None or ``default``: the embedded model) gives an
      :class:`~simcse.modeling.encoder.Encoder` for ``backend`` torch (``torch_options`` go to
      :meth:`Encoder.load`, ``pooler`` overrides the stored one), a
      :class:`~simcse.modeling.graph_encoder.GraphEncoder` for an export directory with ``backend`` onnx or
      openvino (``precision``: OpenVINO's inference precision; the pooler is the graph's).
    """
    backend = check_backend(backend)
    if isinstance(model, SentenceEncoder):
        if pooler is not None and pooler != model.pooler:
            raise SimCSEError(
                f"pooler {pooler} applies when a model is loaded by name or path; this encoder's "
                f"pooler is {model.pooler}"
            )
        if backend != "torch":
            raise SimCSEError(f"backend {backend} loads an export directory, not an encoder object")
        model.check_max_length(torch_options.get("max_length"))
        return model
    if backend == "torch":
        from simcse.modeling.encoder import Encoder

        return Encoder.load(model, pooler, **torch_options)
    from simcse.modeling.graph_encoder import GraphEncoder

    if pooler is not None:
        raise SimCSEError(
            f"--pooler cannot change an exported {backend} model: its pooler is in the graph; "
            "export the model again with that pooler"
        )
    unsupported = sorted(k for k, v in torch_options.items() if v is not None and k != "max_length")
    if unsupported:
        names = " / ".join("--" + k.replace("_", "-") for k in unsupported)
        raise SimCSEError(f"{names} cannot change an exported {backend} model; export the model again")
    return GraphEncoder.load(model, backend, precision, max_length=torch_options.get("max_length"))
