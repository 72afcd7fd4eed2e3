"""``simcse index build [MODEL] --input FILE --output DIR``: encode sentences into a searchable index."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from simcse.cli.options import BF16_HELP, MODEL_HELP, add_model_options
from simcse.core.errors import SimCSEError
from simcse.core.files import check_output_dir, refuse_non_empty, replace_directory


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse index build`` and its options to ``sub``."""
    p = sub.add_parser("index", help="vector indexes of sentences")
    index_sub = p.add_subparsers(dest="index_command", required=True)
    d = index_sub.add_parser(
        "build",
        help="encode a text file and save a searchable index",
        description="Encode --input (one sentence per line; blank lines skipped) and save the index, "
        "the sentences and the model's name to --output, for `simcse search`.",
    )
    d.add_argument("model", metavar="MODEL", nargs="?", default=None, help=MODEL_HELP + " (default: default)")
    d.add_argument("--input", required=True, help="UTF-8 text file, one sentence per line")
    d.add_argument("--output", "--out", dest="out", required=True, help="index directory to write")
    d.add_argument(
        "--index",
        default="auto",
        choices=("auto", "flat", "ivf", "hnsw"),
        help="auto: exact up to 100k sentences, IVF above (faiss)",
    )
    add_model_options(d, batch_size=64, bf16_help=BF16_HELP)
    d.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Encode the input file into an index and move it into ``--output`` once complete (a staging directory
    beside it holds the partial one)."""
    from simcse.cli.options import local_or_id, say
    from simcse.core.precision_options import precision_of
    from simcse.use.api import SimCSE

    out = Path(args.out)
    refuse_non_empty(out, args.overwrite)
    check_output_dir(out, "--output")  # a path under a file: refused now, not after the encoding
    if not Path(args.input).is_file():
        raise SimCSEError(f"{args.input}: input file not found")
    start = time.perf_counter()
    model = SimCSE(local_or_id(args.model), pooler=args.pooler, **precision_of(args)).at_model_limit()
    model.build_index(args.input, index=args.index, batch_size=args.batch_size, show_progress=not args.quiet)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.building")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        model.save_index(staging)
        replace_directory(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    seconds = time.perf_counter() - start
    assert model.vector_index is not None
    print(
        f"indexed {len(model.sentences)} sentences ({model.dim}-dim, {model.vector_index.resolved_kind}) "
        f"in {seconds:.1f} s: {out}"
    )
    say(model.precision_line)
    return 0
