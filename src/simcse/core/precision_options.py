"""The ``--precision`` / ``--bf16`` / ``--backend`` options of every command that encodes, defined once for
the CLI and for ``simcse serve``'s settings (which may not import the CLI package)."""

from __future__ import annotations

import argparse

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BACKENDS = ("torch", "onnx", "openvino", "auto")  # simcse.modeling.loading loads them
PRECISION_HELP = (
    "auto (bf16 weights on a CPU with AMX or AVX512-BF16, and on GPUs with bf16; else fp32) | "
    "fp32 | bf16 | fp16 (GPUs)"
)
BACKEND_HELP = (
    "torch, or onnx / openvino for a directory written by simcse export --to onnx|openvino, or auto: the "
    "fastest of those the model has on the CPU it runs on (the line printed says which)"
)


def add_precision_options(p: argparse.ArgumentParser, backend: bool = True) -> None:
    """--precision (with --bf16 as its old spelling) and, unless ``backend`` is False, --backend."""
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="--precision bf16")
    if backend:
        p.add_argument("--backend", choices=BACKENDS, default="torch", help=BACKEND_HELP)


def precision_of(args: argparse.Namespace) -> dict:
    """The keyword arguments that carry --precision and --backend to the library."""
    return {"precision": args.precision, "backend": getattr(args, "backend", "torch")}
