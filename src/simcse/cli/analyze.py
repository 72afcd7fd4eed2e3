"""``simcse analyze MODEL... [--output DIR]``: anisotropy, similarity by gold score and nearest neighbours."""

from __future__ import annotations

import argparse

from simcse.cli.options import MODEL_HELP, positive_int
from simcse.modeling.names import EMBEDDED_NAME


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse analyze`` and its options to ``sub``."""
    p = sub.add_parser(
        "analyze",
        help="anisotropy (singular-value spectrum, mean cosine), cosine density by STS-B gold score, neighbours",
        description="Writes analysis.json, analysis.md, spectrum.png/.svg and similarity-density.png/.svg "
        "into --output, one column / curve / panel per model (the paper's Section 7 and Figure 3).",
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help=MODEL_HELP + " (default: the embedded model)")
    p.add_argument(
        "--output", "--out", dest="out", default="analysis", help="output directory (default: %(default)s)"
    )
    p.add_argument(
        "--sentences",
        default=None,
        help="text file, one sentence per line, for the spectrum (default: the STS-B test sentences)",
    )
    p.add_argument(
        "--corpus",
        default=None,
        help="text file searched for neighbours (default: the data directory's Wikipedia sample)",
    )
    p.add_argument(
        "--query", action="append", default=[], help="a query sentence (repeatable; default: three)"
    )
    p.add_argument("--k", type=positive_int, default=5, help="neighbours per query")
    p.add_argument("--labels", default=None, help="comma-separated names for the models")
    p.add_argument("--pooler", default=None, help="override the models' pooler")
    p.add_argument("--batch-size", type=positive_int, default=128, help="sentences per batch")
    p.add_argument("--data-dir", default=None, help="data directory (default $SIMCSE_DATA_DIR)")
    p.add_argument("--no-plots", action="store_true", help="only analysis.json and analysis.md")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Analyse each model on STS-B test (or ``--sentences``), print ``analysis.md`` and write it with its JSON
    and plots into ``--output``."""
    from pathlib import Path

    import numpy as np

    from simcse.cli.options import model_arg
    from simcse.core.errors import SimCSEError
    from simcse.data.download import ensure_dataset, resolve_data_dir
    from simcse.data.sentence_files import read_corpus
    from simcse.evaluation import sts
    from simcse.experiments.analysis import DEFAULT_QUERIES, analyze_model, write_analysis
    from simcse.modeling.encoder import Encoder

    if not args.no_plots:
        from simcse.experiments.plots import pyplot

        pyplot()  # before any encoding
    names = args.models or ["default"]
    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    if labels is not None and len(labels) != len(names):
        raise SimCSEError(f"--labels names {len(labels)} models, {len(names)} were given")
    stsb = sts.load_sts_task("STSBenchmark", ensure_dataset("senteval", args.data_dir), "test")
    pairs = next(iter(stsb.subsets.values()))
    sentences = (
        read_corpus(args.sentences, "--sentences")
        if args.sentences
        else list(dict.fromkeys(stsb.sentences()))
    )
    if args.corpus:
        corpus = read_corpus(args.corpus, "--corpus")
    else:
        wiki = resolve_data_dir(args.data_dir) / "wiki" / "wiki1m_for_simcse.head11914.txt"
        corpus = read_corpus(wiki, "--corpus") if wiki.is_file() else sentences
    queries = args.query or list(DEFAULT_QUERIES)
    analyses = []
    for i, name in enumerate(names):
        encoder = Encoder.load(model_arg(name), args.pooler)
        label = (
            labels[i] if labels else (EMBEDDED_NAME if model_arg(name) is None else Path(name).name or name)
        )
        analyses.append(
            analyze_model(
                encoder,
                label,
                sentences,
                (pairs.a, pairs.b, np.asarray(pairs.gold)),
                corpus,
                queries,
                args.k,
                args.batch_size,
            )
        )
    files = write_analysis(analyses, Path(args.out), len(sentences), plots=not args.no_plots)
    print((Path(args.out) / "analysis.md").read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
