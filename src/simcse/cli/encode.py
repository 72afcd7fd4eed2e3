"""``simcse encode [MODEL] --input FILE --output FILE.npy``: a text file of any size into one matrix."""

from __future__ import annotations

import argparse
import sys

from simcse.cli.options import BF16_HELP, MODEL_HELP, add_model_options, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse encode`` and its options to ``sub``."""
    p = sub.add_parser(
        "encode",
        help="encode a text file (one sentence per line) into a .npy matrix",
        description="Encode every line of --input into --output (float32 .npy, row i = line i; blank lines "
        "are encoded as the empty string, so rows and lines stay aligned). The file is streamed in blocks "
        "and written in shards (OUTPUT.shards/), merged at the end: memory stays bounded and a rerun after "
        "an interruption continues from the finished shards. Under torchrun each process encodes every "
        "WORLD_SIZE-th shard and rank 0 merges.",
    )
    p.add_argument("model", metavar="MODEL", nargs="?", default=None, help=MODEL_HELP + " (default: default)")
    p.add_argument("--input", required=True, help="UTF-8 text file, one sentence per line")
    p.add_argument("--output", required=True, help="the .npy file to write")
    add_model_options(p, batch_size=128, bf16_help=BF16_HELP + " (output stays float32)")
    p.add_argument(
        "--max-length",
        type=positive_int,
        default=None,
        help="truncate to this many tokens (default: the model's limit)",
    )
    p.add_argument("--no-normalize", action="store_true", help="keep raw embeddings (default: unit length)")
    p.add_argument(
        "--shard-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="lines per shard (default: the interrupted run's when resuming, else 100000)",
    )
    p.add_argument(
        "--block-size",
        type=positive_int,
        default=8192,
        metavar="N",
        help="lines read and length-sorted together",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--resume",
        dest="overwrite",
        action="store_false",
        help="(default) reuse the verified shards of an interrupted run with the same model, input and settings",
    )
    g.add_argument(
        "--overwrite",
        dest="overwrite",
        action="store_true",
        help="replace an existing output and discard the shards of an earlier run",
    )
    p.set_defaults(overwrite=False)  # --resume is store_false: its own default would be True
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Encode the input file into the output ``.npy`` (:func:`simcse.use.corpus.encode_corpus`; unit rows
    unless ``--no-normalize``)."""
    from simcse.cli.options import model_arg
    from simcse.core.precision_options import precision_of
    from simcse.use.corpus import encode_corpus

    encode_corpus(
        model_arg(args.model),
        args.input,
        args.output,
        batch_size=args.batch_size,
        max_length=args.max_length,
        pooler=args.pooler,
        **precision_of(args),
        normalize=not args.no_normalize,
        shard_size=args.shard_size,
        block_size=args.block_size,
        overwrite=args.overwrite,
        show_progress=not args.quiet,
        log=lambda message: print(message, file=sys.stderr),
    )
    return 0
