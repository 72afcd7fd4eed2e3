"""``simcse export MODEL --to onnx|openvino DIR``: the graph through maintained exporters, checked, then moved
into place.

- the graph: torch's ONNX exporter (TorchScript-based, opset 17) over the Encoder's padded forward (the packed
  CPU path has data-dependent shapes) with transformers' eager attention (its pattern is the one ONNX
  Runtime's optimiser fuses), outputs ``sentence_embedding`` and ``last_hidden_state``;
- ``--optimize O1..O4`` (onnx): ONNX Runtime's transformer optimiser, at the levels optimum names O1-O4 (O1
  basic graph optimisations; O2 plus the transformer fusions: attention, LayerNorm, GELU; O3 plus GELU
  approximation; O4 plus fp16, for GPUs);
- ``--quantize int8``: the scheme (:mod:`simcse.use.graph_int8`) that holds on the CPU class it targets
  (this CPU's, or ``--target-cpu avx2|avx512_vnni|amx``; ``--int8-scheme`` names one instead). onnx: ONNX
  Runtime's dynamic quantisation, int8 weights per channel, 7-bit (``reduce_range``) on AVX2, whose
  u8 x s8 multiply-add saturates; openvino: NNCF's weight-only int8 on AVX2, its calibrated post-training
  quantisation of weights and activations with VNNI or AMX. ``simcse_export.json`` records the scheme, the
  class it was chosen for and the CPU it was checked on; a default scheme the check refuses is followed by
  the next one (``dynamic`` by ``dynamic-reduce-range``, ``static`` by ``weights``), a named one is refused
  with that advice;
- openvino: OpenVINO's converter from that ONNX graph (fp32 weights).

Before anything is moved into DIR, the export is loaded as users load it and compared with the fp32 PyTorch
model (:mod:`simcse.use.export_guard`): refused, with nothing written, when it loses more than ``max_drop``
STS-B dev points (defaults: 0.5 for int8, 0.1 otherwise), or when one sentence's embedding turns away from
fp32's (:data:`~simcse.use.export_guard.MIN_WORST_COSINE`).

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

import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from simcse.core.errors import SimCSEError
from simcse.core.files import replace_directory, write_text_atomic
from simcse.modeling.graph_encoder import EXPORT_JSON, SUBDIR, GraphEncoder
from simcse.modeling.graph_runners import (
    FALLBACK_SCHEMES,
    INT8_SCHEMES,
    pick_int8_scheme,
    require,
    scheme_holds_on,
)
from simcse.use.export_guard import DEFAULT_MAX_DROP, MIN_COSINE, MIN_WORST_COSINE, compare, enforce
from simcse.use.graph_int8 import STATIC_SCHEMES, calibration_sentences, nncf_int8, quantize_onnx

OPTIMIZE_LEVELS = ("O1", "O2", "O3", "O4")
QUANTIZE = ("int8",)
OPSET = 17


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
    attention = _eager_attention(encoder.backbone)
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
        if attention is not None:
            encoder.backbone.set_attn_implementation(attention)


def _eager_attention(backbone: Any) -> str | None:
    """Switch ``backbone`` to transformers' eager attention for the trace and return the attention it had
    (None: unchanged). Traced SDPA is a MatMul / Softmax / Where pattern that ONNX Runtime's transformer
    optimiser does not fuse; the eager pattern becomes its fused Attention (QAttention once quantised) and
    EmbedLayerNormalization. The same arithmetic: the graph matches the model to 1e-5."""
    current = getattr(backbone.config, "_attn_implementation", None)
    if current in (None, "eager") or not hasattr(backbone, "set_attn_implementation"):
        return None
    try:
        backbone.set_attn_implementation("eager")
    except (ValueError, ImportError):  # an architecture without eager attention: traced as it is
        return None
    return current


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


def openvino_model(
    onnx_path: Path, target: Path, encoder: Any, calibration: list[str] | None, scheme: str | None = None
) -> None:
    """OpenVINO's model from the ONNX graph; with an int8 ``scheme``, quantised by NNCF
    (:func:`~simcse.use.graph_int8.nncf_int8`)."""
    require("openvino")
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if scheme is not None:
        model = nncf_int8(model, scheme, encoder, calibration)
    ov.save_model(model, str(target), compress_to_fp16=False)


def graph_file(backend: str, optimize: str | None, quantize: str | None) -> str:
    """The graph's file name, as sentence-transformers names its backend files."""
    if backend == "openvino":
        return "openvino_model_qint8_quantized.xml" if quantize else "openvino_model.xml"
    return "model" + (f"_{optimize}" if optimize else "") + ("_qint8" if quantize else "") + ".onnx"


def check_options(
    backend: str,
    optimize: str | None,
    quantize: str | None,
    target_cpu: str | None = None,
    int8_scheme: str | None = None,
) -> None:
    """Every invalid combination of export options, all in one message."""
    from simcse.core.hardware import INT8_TARGETS

    problems = []
    if target_cpu is not None and target_cpu not in INT8_TARGETS:
        problems.append(f"--target-cpu must be one of {', '.join(INT8_TARGETS)}, got {target_cpu!r}")
    if int8_scheme is not None and int8_scheme not in INT8_SCHEMES.get(backend, {}):
        problems.append(
            f"--int8-scheme must be one of --to {backend}'s ({', '.join(INT8_SCHEMES.get(backend, {}))}), "
            f"got {int8_scheme!r}"
        )
    if (target_cpu is not None or int8_scheme is not None) and not quantize:
        problems.append(
            "--target-cpu and --int8-scheme choose how --quantize int8 quantises: add --quantize int8"
        )
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
    target_cpu: str | None = None,
    int8_scheme: str | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Add the ``backend`` graph to the model directory ``staging`` (already written by ``encoder.save``),
    check it (:mod:`simcse.use.export_guard`; on STS-B dev of ``senteval_dir`` when given) and move ``staging``
    to ``out_dir``.

    Args:
        encoder: the fp32 PyTorch Encoder to export and to check against.
        staging: the model directory being written; ``out_dir``: where it goes once checked.
        backend: ``onnx`` or ``openvino``.
        optimize: onnx: ONNX Runtime's optimisation level (O1-O4).
        quantize: ``int8`` or None.
        max_drop: the STS-B dev points the export may lose (None: :data:`DEFAULT_MAX_DROP`).
        senteval_dir: the SentEval tree of the STS-B dev check (None: the cosine on fixed sentences only).
        calibration: a sentence file for the static int8 schemes (default: STS-B train of
            ``calibration_dir``, else of ``senteval_dir``).
        target_cpu: the CPU class int8 is exported for (:data:`~simcse.core.hardware.INT8_TARGETS`; None:
            this CPU's); it picks the scheme (:data:`~simcse.modeling.graph_runners.DEFAULT_SCHEMES`).
        int8_scheme: a scheme of :data:`~simcse.modeling.graph_runners.INT8_SCHEMES` instead of the
            target's. A chosen scheme the check refuses is refused with the next scheme to try; the target's
            default is followed by that next scheme before anything is refused.
        log: where the check's line goes (default: stderr).

    Returns:
        The export's description, as written to ``simcse_export.json``.
    """
    from simcse.core.hardware import int8_target

    log = log or (lambda message: print(message, file=sys.stderr))
    check_options(backend, optimize, quantize, target_cpu, int8_scheme)
    target = target_cpu or int8_target()
    scheme = pick_int8_scheme(backend, target, int8_scheme) if quantize else None
    if calibration is not None and scheme not in STATIC_SCHEMES:
        raise SimCSEError(
            f"--calibration is for openvino's static int8 schemes (--int8-scheme {' or '.join(STATIC_SCHEMES)}); "
            f"this export's is {scheme or 'none (fp32)'}, which calibrates on nothing"
        )
    sub = staging / SUBDIR[backend]
    name = graph_file(backend, optimize, quantize)
    work = staging / ".graph"
    export_onnx_graph(encoder, work / "model.onnx")
    sub.mkdir(parents=True, exist_ok=True)
    while True:
        texts = None
        if scheme in STATIC_SCHEMES:
            texts = calibration_sentences(calibration, calibration_dir or senteval_dir)
        _write_graph(encoder, backend, work, sub / name, optimize, scheme, texts)
        info = _description(encoder, backend, name, optimize, quantize, scheme, target)
        if scheme is not None:
            info["int8"]["chosen_by"] = "--int8-scheme" if int8_scheme else f"the default for {target} CPUs"
        write_text_atomic(sub / EXPORT_JSON, _json(info))
        try:
            info["guard"], line = _guard(encoder, staging, info, senteval_dir, max_drop)
            break
        except SimCSEError as refused:
            fallback = FALLBACK_SCHEMES.get(scheme or "") if int8_scheme is None else None
            if fallback is None:
                raise
            log(f"simcse export: {refused}; trying the int8 scheme {fallback}")
            scheme = fallback
    log(f"simcse export: {backend} {name}{_scheme_note(info)}: {line}")
    shutil.rmtree(work)
    write_text_atomic(sub / EXPORT_JSON, _json(info))
    replace_directory(staging, out_dir)
    return info


def _write_graph(
    encoder: Any,
    backend: str,
    work: Path,
    target: Path,
    optimize: str | None,
    scheme: str | None,
    calibration: list[str] | None,
) -> None:
    """The graph at ``target`` from the traced ``work/model.onnx``: optimised and quantised (onnx), or
    converted and quantised (openvino)."""
    base = work / "model.onnx"
    if backend != "onnx":
        openvino_model(base, target, encoder, calibration, scheme)
        return
    current = base
    if optimize:
        current = work / f"model_{optimize}.onnx"
        if not current.exists():
            optimize_onnx(base, current, optimize, encoder)
    if scheme:
        quantized = work / "model_qint8.onnx"
        quantize_onnx(current, quantized, scheme)
        current = quantized
    shutil.copy(current, target)
    for extra in work.glob(current.name + ".data"):  # external weights of a large graph
        shutil.copy(extra, target.parent / extra.name)


def _description(
    encoder: Any,
    backend: str,
    name: str,
    optimize: str | None,
    quantize: str | None,
    scheme: str | None,
    target: str,
) -> dict[str, Any]:
    """What ``simcse_export.json`` says before the check: the graph, the model, the int8 scheme and the CPU
    class it was chosen for, and the CPU it is checked on."""
    from simcse.core.hardware import cpu_facts

    int8 = None
    if scheme is not None:
        int8 = {
            "scheme": scheme,
            "what": INT8_SCHEMES[backend][scheme],
            "target_cpu": target,
            "holds_on": "every CPU" if scheme_holds_on(scheme, "avx2") else "CPUs with VNNI or AMX",
        }
    return {
        "backend": backend,
        "file": name,
        "optimize": optimize,
        "quantize": quantize,
        "int8": int8,
        "pooler": encoder.inference_pooler,
        "mlp": bool(encoder.mlp is not None and encoder.mlp_at_inference),
        "max_length": encoder.max_length,
        "dim": encoder.dim,
        "position_limit": encoder.position_limit,
        "opset": OPSET,
        "source": encoder.source,
        "torch": torch.__version__,
        "checked_on": cpu_facts(),
    }


def _guard(
    encoder: Any, staging: Path, info: dict, senteval_dir: Path | None, max_drop: float | None
) -> tuple[dict[str, Any], str]:
    """The export in ``staging`` loaded as users load it and compared with ``encoder``; refused (a
    SimCSEError that names the next scheme to try) when it loses quality. Returns the check's record and
    its line."""
    backend, scheme = info["backend"], (info["int8"] or {}).get("scheme")
    precision = "int8" if scheme else "fp32"
    report = compare(encoder, GraphEncoder.load(staging, backend, "fp32"), senteval_dir)
    limit = DEFAULT_MAX_DROP[precision] if max_drop is None else max_drop
    fallback = FALLBACK_SCHEMES.get(scheme or "")
    if fallback:
        advice = f"try --int8-scheme {fallback} ({INT8_SCHEMES[backend][fallback]})"
    elif scheme:
        other = "onnx" if backend == "openvino" else "openvino"
        advice = f"try --to {other} --quantize int8, or the fp32 export (no --quantize)"
    else:
        advice = None
    what = f"the {backend} export" + (f" (int8, scheme {scheme})" if scheme else "")
    enforce(report, limit, MIN_COSINE[precision], what, MIN_WORST_COSINE[precision], advice)
    return report.as_dict() | {
        "max_drop": limit,
        "min_cosine_each": MIN_WORST_COSINE[precision],
    }, report.line()


def _scheme_note(info: dict) -> str:
    """`` (int8 scheme S for CPU class T, checked on this C CPU)`` for an int8 export, else nothing."""
    int8 = info.get("int8")
    if not int8:
        return ""
    here = info["checked_on"]["int8"]
    return f" (int8 scheme {int8['scheme']} for {int8['target_cpu']} CPUs, checked on this {here} CPU)"


def _json(data: dict) -> str:
    import json

    return json.dumps(data, indent=2) + "\n"
