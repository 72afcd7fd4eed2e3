"""``simcse export MODEL --to onnx|openvino DIR``: the graph through maintained exporters, checked, then moved
into place.

- the graph: torch's ONNX exporter (TorchScript-based, opset 17) over the Encoder's padded forward (the packed
  CPU path has data-dependent shapes), outputs ``sentence_embedding`` and ``last_hidden_state``;
- ``--optimize O1..O4`` (onnx): ONNX Runtime's transformer optimiser, at the levels optimum names O1-O4 (O1
  basic graph optimisations; O2 plus the transformer fusions: attention, LayerNorm, GELU; O3 plus GELU
  approximation; O4 plus fp16, for GPUs);
- ``--quantize int8``: onnx: ONNX Runtime's dynamic quantisation (int8 weights per channel, activations
  quantised at run time: VNNI / AMX-int8 kernels); openvino: NNCF's post-training quantisation (weights and
  activations, calibrated on STS-B train sentences or a file you give);
- openvino: OpenVINO's converter from that ONNX graph (fp32 weights).

Before anything is moved into DIR, the export is loaded as users load it and compared with the fp32 PyTorch
model (:mod:`simcse.use.export_guard`): refused, with nothing written, when it loses more than ``max_drop``
STS-B dev points (defaults: 0.5 for int8, 0.1 otherwise).

The directory written is the model's own simcse / sentence-transformers directory plus ``onnx/`` or
``openvino/`` with the graph, named as sentence-transformers names its backend files (``onnx/model.onnx``,
``onnx/model_O3.onnx``, ``onnx/model_qint8.onnx``, ``openvino/openvino_model.xml``,
``openvino/openvino_model_qint8_quantized.xml``), so ``SentenceTransformer(DIR, backend="onnx")`` finds it,
and a ``simcse_export.json`` beside the graph (what was exported, and the quality check it passed). The graph
takes ``input_ids`` and ``attention_mask`` and gives ``sentence_embedding`` (the pooler and the MLP are in
the graph) and ``last_hidden_state`` (what sentence-transformers' backends read, before its own modules);
:class:`~simcse.modeling.graph_encoder.GraphEncoder` encodes with it.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from simcse.core.errors import SimCSEError
from simcse.core.files import replace_directory, write_text_atomic
from simcse.modeling.graph_encoder import EXPORT_JSON, SUBDIR, GraphEncoder
from simcse.modeling.graph_runners import require
from simcse.use.export_guard import DEFAULT_MAX_DROP, MIN_COSINE, compare, enforce

OPTIMIZE_LEVELS = ("O1", "O2", "O3", "O4")
QUANTIZE = ("int8",)
OPSET = 17
CALIBRATION_SENTENCES = 300


class _Graph(torch.nn.Module):
    """The Encoder's inference forward as a traceable graph: (sentence_embedding, last_hidden_state)."""

    def __init__(self, encoder: Any):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        from simcse.modeling.pooling import pool

        enc = self.encoder
        hidden = enc.hidden_states(input_ids, attention_mask)
        pooled = pool(enc.pooler, hidden, attention_mask, enc.num_layers)
        if enc.mlp is not None and enc.mlp_at_inference:
            pooled = enc.mlp(pooled)
        return pooled, hidden[enc.num_layers]


def export_onnx_graph(encoder: Any, path: Path) -> None:
    """Write the fp32 ONNX graph of ``encoder`` (inputs ``input_ids``, ``attention_mask``: batch x sequence)."""
    import warnings

    require("onnx", "onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    example = encoder.tokenizer(
        ["A first example sentence.", "A second, somewhat longer example sentence."],
        padding=True,
        return_tensors="pt",
    )
    axes = {
        name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask", "last_hidden_state")
    }
    axes["sentence_embedding"] = {0: "batch"}
    packed, encoder.packed = encoder.packed, False
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on Python-level shape arithmetic
            torch.onnx.export(
                _Graph(encoder).eval(),
                (example["input_ids"], example["attention_mask"]),
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["sentence_embedding", "last_hidden_state"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        encoder.packed = packed


def optimize_onnx(source: Path, target: Path, level: str, encoder: Any) -> None:
    """ONNX Runtime's transformer optimiser at optimum's level ``level`` (O1-O4)."""
    require("onnx")
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    config = encoder.backbone.config
    model_type = (
        "bert" if config.model_type in ("bert", "roberta", "xlm-roberta", "camembert", "mpnet") else None
    )
    if level == "O4":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise SimCSEError(
                "--optimize O4 is O3 in fp16, for GPUs: this onnxruntime has no CUDA provider; "
                "use O1, O2 or O3 on a CPU"
            )
    if model_type is None and level != "O1":
        raise SimCSEError(
            f"--optimize {level}: ONNX Runtime's transformer fusions know BERT-like models, not "
            f"{config.model_type}; use --optimize O1"
        )
    options = None
    if model_type is not None:
        options = FusionOptions(model_type)
        options.enable_gelu_approximation = level in ("O3", "O4")
    model = optimize_model(
        str(source),
        model_type=model_type or "bert",
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        optimization_options=options,
        opt_level=1 if level == "O1" else 2,
        only_onnxruntime=model_type is None,
        use_gpu=level == "O4",
    )
    if level == "O4":
        model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(target))


class _NoPreprocessAdvice(logging.Filter):
    """The quantiser's root-logger advice to pre-process the model, printed on every call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quantize_onnx(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation (ONNX Runtime's quantiser): int8 weights per channel."""
    require("onnx")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _NoPreprocessAdvice()
    logging.getLogger().addFilter(quiet)
    try:
        # DefaultTensorType: shape inference does not type the outputs of the optimiser's fused (contrib) nodes
        quantize_dynamic(
            str(source),
            str(target),
            per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().removeFilter(quiet)


def openvino_model(onnx_path: Path, target: Path, encoder: Any, calibration: list[str] | None) -> None:
    """OpenVINO's model from the ONNX graph; with ``calibration`` sentences, NNCF's int8 quantisation."""
    require("openvino")
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if calibration is not None:
        import nncf

        tokens = encoder.tokenize(calibration)
        batches = [
            {"input_ids": b["input_ids"].numpy(), "attention_mask": b["attention_mask"].numpy()}
            for _, b in encoder.iter_batches(tokens, 1)
        ]
        model = nncf.quantize(
            model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches)
        )
    ov.save_model(model, str(target), compress_to_fp16=False)


def graph_file(backend: str, optimize: str | None, quantize: str | None) -> str:
    """The graph's file name, as sentence-transformers names its backend files."""
    if backend == "openvino":
        return "openvino_model_qint8_quantized.xml" if quantize else "openvino_model.xml"
    return "model" + (f"_{optimize}" if optimize else "") + ("_qint8" if quantize else "") + ".onnx"


def check_options(backend: str, optimize: str | None, quantize: str | None) -> None:
    """Every invalid combination of export options, all in one message."""
    problems = []
    if optimize is not None and optimize not in OPTIMIZE_LEVELS:
        problems.append(f"--optimize must be one of {', '.join(OPTIMIZE_LEVELS)}, got {optimize!r}")
    if optimize is not None and backend != "onnx":
        problems.append("--optimize is for --to onnx (OpenVINO optimises the graph when it compiles it)")
    if quantize is not None and quantize not in QUANTIZE:
        problems.append(f"--quantize must be int8, got {quantize!r}")
    if optimize == "O4" and quantize:
        problems.append("--optimize O4 (fp16) and --quantize int8 exclude each other")
    if problems:
        raise SimCSEError("; ".join(problems))


def calibration_sentences(path: str | Path | None, senteval_dir: Path | None) -> list[str]:
    """The sentences NNCF calibrates on: ``path``'s lines, else STS-B train's first distinct sentences."""
    if path is not None:
        from simcse.data.sentence_files import read_corpus

        return read_corpus(path, "a calibration file")[:CALIBRATION_SENTENCES]
    if senteval_dir is None:
        raise SimCSEError(
            "--quantize int8 with openvino calibrates on STS-B train sentences: give --data-dir "
            "(or $SIMCSE_DATA_DIR) or --calibration FILE"
        )
    from simcse.evaluation import sts

    sentences = sts.load_sts_task("STSBenchmark", senteval_dir, "train").sentences()
    return list(dict.fromkeys(sentences))[:CALIBRATION_SENTENCES]


def export_backend(
    encoder: Any,
    staging: Path,
    out_dir: Path,
    backend: str,
    *,
    optimize: str | None = None,
    quantize: str | None = None,
    max_drop: float | None = None,
    senteval_dir: Path | None = None,
    calibration: str | Path | None = None,
    calibration_dir: Path | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Add the ``backend`` graph to the model directory ``staging`` (already written by ``encoder.save``),
    check it (:mod:`simcse.use.export_guard`; on STS-B dev of ``senteval_dir`` when given) and move ``staging`` to
    ``out_dir``. OpenVINO's int8 calibrates on ``calibration`` (a file) or STS-B train of ``calibration_dir``
    (default: ``senteval_dir``). Returns the export's description (``simcse_export.json``)."""
    log = log or (lambda message: print(message, file=sys.stderr))
    check_options(backend, optimize, quantize)
    sub = staging / SUBDIR[backend]
    name = graph_file(backend, optimize, quantize)
    work = staging / ".graph"
    base = work / "model.onnx"
    export_onnx_graph(encoder, base)
    sub.mkdir(parents=True, exist_ok=True)
    if backend == "onnx":
        current = base
        if optimize:
            current = work / f"model_{optimize}.onnx"
            optimize_onnx(base, current, optimize, encoder)
        if quantize:
            quantized = work / "model_qint8.onnx"
            quantize_onnx(current, quantized)
            current = quantized
        shutil.move(str(current), sub / name)
        for extra in work.glob(current.name + ".data"):  # external weights of a large graph
            shutil.move(str(extra), sub / extra.name)
    else:
        texts = calibration_sentences(calibration, calibration_dir or senteval_dir) if quantize else None
        openvino_model(base, sub / name, encoder, texts)
    shutil.rmtree(work)
    info = {
        "backend": backend,
        "file": name,
        "optimize": optimize,
        "quantize": quantize,
        "pooler": encoder.inference_pooler,
        "mlp": bool(encoder.mlp is not None and encoder.mlp_at_inference),
        "max_length": encoder.max_length,
        "dim": encoder.dim,
        "position_limit": encoder.position_limit,
        "opset": OPSET,
        "source": encoder.source,
        "torch": torch.__version__,
    }
    write_text_atomic(sub / EXPORT_JSON, _json(info))
    precision = "int8" if quantize else "fp32"
    exported = GraphEncoder.load(staging, backend, "fp32")
    report = compare(encoder, exported, senteval_dir)
    limit = DEFAULT_MAX_DROP[precision] if max_drop is None else max_drop
    enforce(report, limit, MIN_COSINE[precision], f"the {backend} export{' (int8)' if quantize else ''}")
    log(f"simcse export: {backend} {name}: {report.line()}")
    info["guard"] = report.as_dict() | {"max_drop": limit}
    write_text_atomic(sub / EXPORT_JSON, _json(info))
    replace_directory(staging, out_dir)
    return info


def _json(data: dict) -> str:
    import json

    return json.dumps(data, indent=2) + "\n"
