"""``simcse export MODEL --to sentence-transformers|hf|onnx|openvino DIR``."""

from __future__ import annotations

import argparse

from simcse.cli.options import MODEL_HELP, add_model_options
from simcse.core.hardware import INT8_TARGETS


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse export`` and its options to ``sub``."""
    p = sub.add_parser(
        "export",
        help="export a model as a sentence-transformers or Hugging Face directory, or with an ONNX / OpenVINO graph",
        description="sentence-transformers: SentenceTransformer(DIR).encode gives this model's embeddings. "
        "hf: AutoModel.from_pretrained(DIR) loads it; for the cls pooler the SimCSE MLP is the BERT "
        "pooler layer, so pooler_output is the embedding (as in princeton-nlp's released checkpoints). "
        "onnx / openvino: the model directory plus onnx/ or openvino/ with the graph (pooler and MLP inside), "
        "loaded by simcse's --backend onnx|openvino and sentence-transformers' backend=; checked on STS-B dev "
        "against the fp32 model and refused beyond --max-drop. "
        "The export is checked against the model before it is moved into DIR.",
    )
    # required: the embedded model is already a sentence-transformers directory, and an optional MODEL
    # before the DIR positional would make argparse read `export RUN --to hf DIR` as DIR=RUN
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument(
        "--to",
        "--format",
        dest="to",
        required=True,
        choices=("sentence-transformers", "hf", "onnx", "openvino"),
    )
    p.add_argument("out_dir", metavar="DIR")
    add_model_options(p)
    p.add_argument(
        "--st-layout",
        choices=("compatible", "current"),
        default="compatible",
        help="sentence-transformers file names: compatible (loaded by sentence-transformers 3.0.1 to 6.x) or "
        "current (6.x's own module paths and config keys; 5.4+ only)",
    )
    p.add_argument(
        "--optimize",
        choices=("O1", "O2", "O3", "O4"),
        default=None,
        help="onnx: ONNX Runtime's graph optimisation level, as optimum names them (O4: fp16, GPUs)",
    )
    p.add_argument(
        "--quantize",
        choices=("int8",),
        default=None,
        help="int8: in the scheme that holds on the --target-cpu class (onnx: ONNX Runtime's dynamic "
        "quantisation, 7-bit weights on avx2; openvino: NNCF's weight-only int8 on avx2, its calibrated "
        "static int8 with VNNI / AMX)",
    )
    p.add_argument(
        "--target-cpu",
        choices=tuple(INT8_TARGETS),
        default=None,
        help="--quantize int8 for CPUs of this class (default: the class of the CPU it runs on): avx2 (no VNNI), avx512_vnni "
        "(AVX512-VNNI or AVX-VNNI), amx",
    )
    p.add_argument(
        "--int8-scheme",
        default=None,
        metavar="SCHEME",
        help="--quantize int8 in this scheme instead of the target's: onnx dynamic | dynamic-reduce-range; "
        "openvino static | static-overflow-fix | weights",
    )
    p.add_argument(
        "--max-drop",
        type=float,
        default=None,
        metavar="POINTS",
        help="refuse the export if STS-B dev Spearman falls more than this (default 0.5 int8, else 0.1)",
    )
    p.add_argument(
        "--data-dir", default=None, help="data directory of the STS-B check (default $SIMCSE_DATA_DIR)"
    )
    p.add_argument(
        "--no-sts-check",
        action="store_true",
        help="check only the cosine to fp32 on fixed sentences (no STS-B dev data needed)",
    )
    p.add_argument(
        "--calibration",
        default=None,
        metavar="FILE",
        help="openvino static int8: calibrate on these sentences (one per line; default STS-B train)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export the model (:func:`simcse.use.export.export_model`, checked before it is moved into DIR) and
    print where it went."""
    from simcse.cli.options import flags, model_arg
    from simcse.use.export import export_model

    model = model_arg(args.model)
    passed = flags(
        args,
        "pooler",
        "overwrite",
        "st_layout",
        "optimize",
        "quantize",
        "max_drop",
        "data_dir",
        "calibration",
        "target_cpu",
        "int8_scheme",
    )
    out = export_model(model, args.out_dir, args.to, sts_check=not args.no_sts_check, **passed)
    name = args.model if model is not None else "the embedded model"
    print(f"exported {name} as {args.to}: {out}")
    return 0
