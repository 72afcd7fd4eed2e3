"""``simcse similarity [MODEL] A B``: the cosine similarity of two sentences."""

from __future__ import annotations

import argparse

from simcse.cli.options import BF16_HELP, MODEL_HELP, add_model_options
from simcse.modeling.names import EMBEDDED_NAME


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse similarity`` and its options to ``sub``."""
    p = sub.add_parser(
        "similarity",
        help="cosine similarity of two sentences",
        description="Print the cosine similarity of two sentences (4 decimals). "
        f"Without MODEL (or with 'default' or '-'): the embedded {EMBEDDED_NAME}.",
    )
    # one list, split in run(): an optional MODEL before two required positionals would make argparse read
    # `similarity MODEL --pooler avg A B` as A=MODEL; words after the options join the list (cli.main)
    p.add_argument(
        "words",
        nargs="+",
        metavar="[MODEL] A B",
        help=f"two sentences, after an optional MODEL: {MODEL_HELP} (default: default)",
    )
    add_model_options(p, bf16_help=BF16_HELP)
    p.set_defaults(func=run, usage_error=p.error, intermixed="words")


def run(args: argparse.Namespace) -> int:
    """Print the cosine similarity of the two sentences, to four decimals."""
    from simcse.cli.options import model_arg, say
    from simcse.core.precision_options import precision_of
    from simcse.use.api import SimCSE

    if len(args.words) not in (2, 3):
        args.usage_error(
            f"expected [MODEL] A B (two sentences, after an optional model), got {len(args.words)} words"
        )
    model_name, a, b = [None, *args.words] if len(args.words) == 2 else args.words
    model = SimCSE(model_arg(model_name), pooler=args.pooler, **precision_of(args)).at_model_limit()
    print(f"{model.similarity(a, b):.4f}")
    say(model.precision_line)
    return 0
