"""``simcse data download NAME...``: the paper's data sets from princeton-nlp/datasets-for-simcse."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse data download`` and its options to ``sub``."""
    p = sub.add_parser("data", help="data sets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    d = data_sub.add_parser(
        "download",
        help="download SentEval, wiki1m or NLI data from princeton-nlp/datasets-for-simcse",
        description="Downloads go through the Hugging Face cache ($HF_HOME); with HF_HUB_OFFLINE=1 or no "
        "network, a copy found there is used.",
    )
    d.add_argument("names", nargs="+", choices=("senteval", "wiki1m", "nli", "all"))
    d.add_argument(
        "--dir", default=None, help="data directory (default $SIMCSE_DATA_DIR, then ~/.cache/simcse/data)"
    )
    d.add_argument(
        "--endpoint",
        metavar="URL",
        default=None,
        help="a mirror of the Hugging Face Hub (default $HF_ENDPOINT, then https://huggingface.co)",
    )
    d.add_argument("--force", action="store_true", help="download again even if present")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Download the named data sets (:func:`simcse.data.download.main_download`); its exit status."""
    from simcse.data.download import main_download

    return main_download(args.names, args.dir, endpoint=args.endpoint, force=args.force)
