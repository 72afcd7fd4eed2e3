"""The int8 quantisation of an exported graph, by scheme: ONNX Runtime's dynamic quantisation, NNCF's weight
compression, or NNCF's calibrated post-training quantisation.

The schemes, which CPU class gets which and why, are in :data:`~simcse.modeling.graph_runners.INT8_SCHEMES`;
:mod:`simcse.use.graph_export` applies one and checks the result (:mod:`simcse.use.export_guard`). The
calibrated schemes calibrate on STS-B train sentences or a file given.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from simcse.core.errors import SimCSEError
from simcse.modeling.graph_runners import require

CALIBRATION_SENTENCES = 300
STATIC_SCHEMES = ("static", "static-overflow-fix")  # the int8 schemes that calibrate on sentences


class _NoPreprocessAdvice(logging.Filter):
    """The quantiser's root-logger advice to pre-process the model, printed on every call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quantize_onnx(source: Path, target: Path, scheme: str = "dynamic") -> None:
    """Dynamic int8 quantisation (ONNX Runtime's quantiser): int8 weights per channel; 7-bit
    (``reduce_range``) for the scheme ``dynamic-reduce-range``."""
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
            reduce_range=scheme == "dynamic-reduce-range",
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().removeFilter(quiet)


def nncf_int8(model: Any, scheme: str, encoder: Any, calibration: list[str] | None) -> Any:
    """An OpenVINO model quantised by NNCF with an openvino ``scheme``
    (:data:`~simcse.modeling.graph_runners.INT8_SCHEMES`): ``weights`` compresses the weights alone
    (``nncf.compress_weights``, int8_sym); ``static`` / ``static-overflow-fix`` quantise weights and
    activations (``nncf.quantize``, transformer model type), calibrated on the ``calibration`` sentences,
    with NNCF's overflow fix off (VNNI and AMX do not saturate) or on in every layer (7-bit weights).

    Args:
        model: the ``openvino.Model`` converted from the fp32 ONNX graph.
        scheme: ``weights``, ``static`` or ``static-overflow-fix``.
        encoder: the Encoder whose tokenizer makes the calibration batches.
        calibration: the sentences of a static scheme (None for ``weights``).

    Returns:
        The quantised ``openvino.Model``.
    """
    import nncf

    if scheme == "weights":
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM)
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    tokens = encoder.tokenize(calibration or [])
    batches = [
        {"input_ids": b["input_ids"].numpy(), "attention_mask": b["attention_mask"].numpy()}
        for _, b in encoder.iter_batches(tokens, 1)
    ]
    fix = OverflowFix.ENABLE if scheme == "static-overflow-fix" else OverflowFix.DISABLE
    return nncf.quantize(
        model,
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(batches),
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=fix),
    )


def calibration_sentences(path: str | Path | None, senteval_dir: Path | None) -> list[str]:
    """The sentences NNCF calibrates on: ``path``'s lines, else STS-B train's first distinct sentences."""
    if path is not None:
        from simcse.data.sentence_files import read_corpus

        return read_corpus(path, "a calibration file")[:CALIBRATION_SENTENCES]
    if senteval_dir is None:
        raise SimCSEError(
            "openvino's static int8 calibrates on STS-B train sentences: give --data-dir "
            "(or $SIMCSE_DATA_DIR) or --calibration FILE, or use --int8-scheme weights (no calibration)"
        )
    from simcse.evaluation import sts

    sentences = sts.load_sts_task("STSBenchmark", senteval_dir, "train").sentences()
    return list(dict.fromkeys(sentences))[:CALIBRATION_SENTENCES]
