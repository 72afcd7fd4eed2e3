"""``simcse baselines [ENCODER] [--tasks sts,clustering] [--trained RUN ...]``: the related work's
training-free baselines for one encoder, by the same evaluator, with each row's runtime."""

from __future__ import annotations

import argparse

from simcse.cli.options import positive_int
from simcse.core.precision_options import add_precision_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse baselines`` and its options to ``sub``."""
    p = sub.add_parser(
        "baselines",
        help="the training-free baselines (word vectors, SWEM, power means, SIF, uSIF, ABTT, WMD, WRD, the "
        "encoder's own poolers, whitening, PromptBERT's template) for one encoder, as one table",
    )
    p.add_argument(
        "encoder", nargs="?", default=None, help="HF encoder id or directory (default: the embedded model)"
    )
    p.add_argument("--tasks", default="sts", help="sts, clustering, or both: sts,clustering")
    p.add_argument(
        "--trained", action="append", default=[], metavar="RUN", help="also a trained model (repeatable)"
    )
    p.add_argument("--data-dir", default=None, help="data directory (default $SIMCSE_DATA_DIR)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="sentences per batch")
    add_precision_options(p, backend=False)
    p.add_argument("--output", default=None, help="write every row's results as JSON")
    p.add_argument("--csv", default=None, help="append one row per baseline to this CSV")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute the baseline table for the encoder (progress on stderr), print it and its runtimes, and write
    ``--output`` (JSON) / ``--csv`` when given."""
    import sys

    from simcse.cli.options import model_arg
    from simcse.core.files import check_output_file
    from simcse.evaluation.baseline_table import baseline_table, runtime_table
    from simcse.evaluation.report import append_csv, markdown_tables, write_json
    from simcse.modeling.names import EMBEDDED_NAME

    for path, option in ((args.output, "--output"), (args.csv, "--csv")):
        if path:
            check_output_file(path, option)
    encoder = model_arg(args.encoder)
    results = baseline_table(
        encoder,
        args.tasks,
        args.trained,
        args.data_dir,
        args.batch_size,
        echo=lambda line: print(line, file=sys.stderr, flush=True),
        precision=args.precision,
    )
    print(markdown_tables(results))
    print("\n" + runtime_table(results))
    if args.output:
        write_json({"encoder": encoder or EMBEDDED_NAME, "rows": results}, args.output)
    if args.csv:
        for result in results:
            append_csv(result, args.csv)
    return 0
