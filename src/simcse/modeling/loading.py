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
    """The encoder of ``model``, wherever an encoder is accepted (the API, the evaluator, corpus encoding,
    export).

    Args:
        model: an encoder object, used as it is (``pooler`` may only repeat its own pooler, ``max_length``
            must fit it, ``backend`` must be torch); or a name or path (None or ``default``: the embedded
            model), which gives an :class:`~simcse.modeling.encoder.Encoder` for backend torch and a
            :class:`~simcse.modeling.graph_encoder.GraphEncoder` for an export directory with backend onnx or
            openvino.
        pooler: backend torch: overrides the stored pooler (None: the model's); refused for an exported graph,
            whose pooler is in the graph.
        backend: ``torch`` (None: torch), ``onnx`` or ``openvino``.
        precision: an exported graph's: OpenVINO's inference precision (auto | fp32 | bf16; None: auto); ONNX
            Runtime takes only auto / fp32 (it runs the graph as exported). Not used for backend torch, whose
            encoding precision the caller picks.
        **torch_options: backend torch: keyword arguments of :meth:`~simcse.modeling.encoder.Encoder.load`
            (``max_length``, ``plain_pooler``, ``prompt_template``...); an exported graph takes ``max_length``
            only, and any other option that is not None is refused.

    Raises:
        SimCSEError: an unknown backend, or an option the model cannot take."""
    backend = check_backend(backend)
    if backend == "auto":
        from simcse.modeling.graph_encoder import choose_backend

        backend = choose_backend(model)[0]
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
