"""Export a model for use without simcse: a sentence-transformers directory, a plain Hugging Face one, or
one with an ONNX / OpenVINO graph for fast CPU inference (:mod:`simcse.use.graph_export`).

- ``sentence-transformers``: the full simcse model directory (:meth:`Encoder.save`): HF weights and
  tokenizer at the top level plus the module files (``modules.json``, ``1_Pooling``, ``2_Dense`` for the
  MLP ...), so ``SentenceTransformer(dir).encode`` gives the simcse embeddings (before normalisation).
- ``hf``: only what ``transformers.AutoModel`` / ``AutoTokenizer`` read (``config.json``,
  ``model.safetensors``, tokenizer files) and ``simcse.json`` (the pooler, so simcse reloads it exactly).
  As in princeton-nlp's released checkpoints, the MLP of a ``cls`` model is BERT's pooler layer, so
  ``AutoModel(...).pooler_output`` is the SimCSE embedding; for the other poolers the pooling is applied to
  ``last_hidden_state`` / ``hidden_states`` by the user (``simcse.json`` says which).

Every export is written into a temporary sibling directory, checked (the exported model is loaded back with
the target library and must reproduce the embeddings of a few probe sentences), then moved into place.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simcse.core.errors import SimCSEError
from simcse.core.files import refuse_non_empty, replace_directory
from simcse.modeling.encoder import Encoder
from simcse.modeling.st_pipeline import check_st_layout

FORMATS = ("sentence-transformers", "hf", "onnx", "openvino")
GRAPH_FORMATS = ("onnx", "openvino")
PROBES = ["A man is playing a guitar.", "Two dogs run in the park, chasing a red ball.", "Hello!"]
HF_KEEP_SUFFIXES = (".json", ".txt", ".model", ".safetensors")
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
ATOL = 1e-4
GPU_ATOL = 5e-3


def _hf_embeddings(path: Path, pooler: str, sentences: list[str], max_length: int) -> np.ndarray:
    """Embeddings computed with transformers alone from an ``hf`` export (the recipe in the docstring)."""
    from transformers import AutoModel, AutoTokenizer

    from simcse.modeling.model_dir import _from_pretrained
    from simcse.modeling.pooling import layers_needed, pool

    model = _from_pretrained(AutoModel, path).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        out = model(**batch, output_hidden_states=True)
    if pooler == "cls":
        return out.pooler_output.float().numpy()
    layers = model.config.num_hidden_layers
    hidden = {i: out.hidden_states[i] for i in layers_needed(pooler, layers)}
    return pool(pooler, hidden, batch["attention_mask"], layers).float().numpy()


def _st_embeddings(path: Path, sentences: list[str]) -> np.ndarray | None:
    """Embeddings from ``SentenceTransformer(path)``; None when sentence-transformers is not installed."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the middle of the command's output
    try:
        model = SentenceTransformer(str(path), device="cpu")
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return np.asarray(model.encode(sentences, convert_to_numpy=True, normalize_embeddings=False))


def _prune_to_hf(directory: Path) -> None:
    """Remove the sentence-transformers module files, keeping HF weights, config, tokenizer, simcse.json."""
    for entry in list(directory.iterdir()):
        if entry.is_dir():
            shutil.rmtree(entry)  # 1_Pooling, 2_Dense, ...
        elif entry.name in ST_FILES or not entry.name.endswith(HF_KEEP_SUFFIXES):
            entry.unlink()


def verify_export(directory: Path, to: str, encoder: Encoder) -> float | None:
    """Largest absolute difference between the exported model's embeddings and ``encoder``'s (None when
    the target library is not installed here, so the export cannot be checked)."""
    expected = encoder.encode(PROBES, normalize=False)
    if to == "hf":
        got = _hf_embeddings(directory, encoder.inference_pooler, PROBES, encoder.max_length)
    else:
        got = _st_embeddings(directory, PROBES)
        if got is None:
            return None
    if got.shape != expected.shape:
        return float("inf")
    return float(np.abs(got - expected).max())


def export_model(
    model: Encoder | str | os.PathLike | None,
    out_dir: str | os.PathLike,
    to: str = "sentence-transformers",
    *,
    pooler: str | None = None,
    overwrite: bool = False,
    verify: bool = True,
    st_layout: str = "compatible",
    optimize: str | None = None,
    quantize: str | None = None,
    max_drop: float | None = None,
    data_dir: str | os.PathLike | None = None,
    sts_check: bool = True,
    calibration: str | os.PathLike | None = None,
    target_cpu: str | None = None,
    int8_scheme: str | None = None,
) -> Path:
    """Write ``model`` (an Encoder, a model path / hub id, or None for the embedded model) to ``out_dir`` in
    format ``to`` (``sentence-transformers`` or ``hf``). A non-empty ``out_dir`` is refused unless
    ``overwrite``; nothing is written at ``out_dir`` unless the export checks out. ``st_layout``: the
    sentence-transformers files' names, ``compatible`` (3.0.1 to 6.x) or ``current`` (6.x's own).

    ``onnx`` / ``openvino`` add the graph (``optimize`` O1-O4 for onnx, ``quantize`` int8) and check it on
    STS-B dev of ``data_dir`` (refused beyond ``max_drop`` points; ``sts_check=False``: the cosine on fixed
    sentences only); ``calibration``: a text file for OpenVINO's static int8 calibration (default STS-B
    train). ``quantize`` int8 picks the scheme for the CPU class ``target_cpu`` (avx2 | avx512_vnni | amx;
    None: this CPU's), or ``int8_scheme`` names one (:mod:`simcse.use.graph_int8`)."""
    graph_data = _check_options(
        to, optimize, quantize, max_drop, calibration, data_dir, sts_check, target_cpu, int8_scheme
    )
    check_st_layout(st_layout)
    out_dir = Path(out_dir)
    _check_target(model, out_dir, overwrite)
    encoder = _exportable(model, pooler, to)
    staging = out_dir.with_name(f".{out_dir.name}.export")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        encoder.save(staging, st_layout=st_layout)
        if to in GRAPH_FORMATS:
            from simcse.use.graph_export import export_backend

            senteval_dir, calibration_dir = graph_data
            export_backend(
                encoder,
                staging,
                out_dir,
                to,
                optimize=optimize,
                quantize=quantize,
                max_drop=max_drop,
                senteval_dir=senteval_dir,
                calibration=calibration,
                calibration_dir=calibration_dir,
                target_cpu=target_cpu,
                int8_scheme=int8_scheme,
            )
            return out_dir
        if to == "hf":
            _prune_to_hf(staging)
        if verify:
            _verify(staging, to, encoder, out_dir)
        replace_directory(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir


def _check_options(
    to: str,
    optimize: str | None,
    quantize: str | None,
    max_drop: float | None,
    calibration: str | os.PathLike | None,
    data_dir: str | os.PathLike | None,
    sts_check: bool,
    target_cpu: str | None = None,
    int8_scheme: str | None = None,
) -> tuple[Path | None, Path | None]:
    """The options of format ``to``, checked before anything is read; for a graph, the SentEval tree to
    check it on (None: ``sts_check`` off) and the one to calibrate on (None: not there)."""
    if to not in FORMATS:
        raise SimCSEError(f"unknown export format {to!r}; choose one of {', '.join(FORMATS)}")
    if to not in GRAPH_FORMATS:
        if optimize or quantize or calibration or target_cpu or int8_scheme or max_drop is not None:
            raise SimCSEError(
                "--optimize, --quantize, --target-cpu, --int8-scheme, --max-drop and --calibration are for "
                "--to onnx or openvino"
            )
        return None, None
    from simcse.core.errors import MissingDataError
    from simcse.data.download import ensure_dataset
    from simcse.modeling.graph_runners import EXTRAS, require
    from simcse.use.graph_export import check_options

    check_options(to, optimize, quantize, target_cpu, int8_scheme)
    require(to, *EXTRAS[to])
    try:
        found = ensure_dataset("senteval", data_dir, download=False)
    except MissingDataError as err:
        if sts_check:
            raise SimCSEError(
                f"{err}: the {to} export is checked on STS-B dev; give --data-dir, or "
                "--no-sts-check to check only the cosine on fixed sentences"
            ) from None
        found = None
    return (found if sts_check else None), found


def _check_target(model: Any, out_dir: Path, overwrite: bool) -> None:
    """Refuse an output directory that is, holds or lies inside the model's own directory, or that is not
    empty (unless ``overwrite``)."""
    if isinstance(model, (str, os.PathLike)) and Path(model).expanduser().is_dir():
        source, target = Path(model).expanduser().resolve(), out_dir.expanduser().resolve()
        if target == source or source in target.parents or target in source.parents:
            raise SimCSEError(
                f"{out_dir}: the export would replace its own source {model}; choose another directory"
            )
    refuse_non_empty(out_dir, overwrite)


def _exportable(model: Encoder | str | os.PathLike | None, pooler: str | None, to: str) -> Encoder:
    """The PyTorch encoder to export (None, "": the embedded model), refused when format ``to`` cannot hold
    it (a prompt model anywhere; an MLP without a pooler layer in a plain HF directory)."""
    from simcse.modeling.loading import load_encoder

    encoder = load_encoder(model, pooler)
    if not isinstance(encoder, Encoder):
        raise SimCSEError(f"{encoder.source}: only a PyTorch encoder can be exported")
    encoder.eval()
    if encoder.pooler == "prompt":
        from simcse.modeling.st_pipeline import PROMPT_REFUSED

        raise SimCSEError(f"{encoder.source}: {PROMPT_REFUSED}")
    mlp_used = encoder.mlp is not None and encoder.mlp_at_inference
    if to == "hf" and mlp_used and not hasattr(encoder.backbone, "pooler"):
        raise SimCSEError(
            f"{encoder.source}: a {encoder.backbone.config.model_type} model has no pooler layer to hold "
            "the MLP; export --to sentence-transformers instead"
        )
    return encoder


def _verify(staging: Path, to: str, encoder: Encoder, out_dir: Path) -> None:
    """The written directory, loaded as its users load it, must reproduce the encoder's embeddings."""
    diff = verify_export(staging, to, encoder)
    # the check runs on the CPU; a model on a GPU (TF32, other kernels) differs a little more
    tolerance = ATOL if encoder.device.type == "cpu" else GPU_ATOL
    if diff is None:
        warnings.warn("sentence-transformers is not installed: the export was not checked", stacklevel=3)
    elif not diff <= tolerance:
        raise SimCSEError(
            f"{out_dir}: the exported {to} model does not reproduce the embeddings "
            f"(max difference {diff:.2e}); nothing was written"
        )
