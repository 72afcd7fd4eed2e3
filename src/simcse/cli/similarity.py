"""``simcse similarity [MODEL] A B``: the cosine similarity of two sentences."""

from __future__ import annotations

import argparse

from simcse.cli.options import BF16_HELP, MODEL_HELP, add_model_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "similarity",
        help="cosine similarity of two sentences",
        description="Print the cosine similarity of two sentences (4 decimals). "
        "Without MODEL (or with 'default' or '-'): the embedded all-MiniLM-L6-v2.",
    )
    p.add_argument("model", metavar="MODEL", nargs="?", default=None, help=MODEL_HELP + " (default: default)")
    p.add_argument("sentence_a", metavar="A")
    p.add_argument("sentence_b", metavar="B")
    add_model_options(p, bf16_help=BF16_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simcse.api import SimCSE
    from simcse.cli.options import dtype, model_arg

    model = SimCSE(model_arg(args.model), pooler=args.pooler, dtype=dtype(args.bf16))
    print(f"{model.similarity(args.sentence_a, args.sentence_b):.4f}")
    return 0
