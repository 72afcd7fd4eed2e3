"""``simcse eval MODEL...``: STS, transfer tasks and geometry, printed as tables (and JSON / CSV)."""

from __future__ import annotations

import argparse

from simcse.cli.options import MODEL_HELP, positive_int
from simcse.core.errors import SimCSEError
from simcse.core.precision_options import add_precision_options
from simcse.modeling.names import EMBEDDED_NAME


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse eval`` and its options to ``sub``."""
    p = sub.add_parser("eval", help="evaluate encoders on STS, transfer tasks and geometry")
    p.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help=MODEL_HELP + " (default: default)",
    )
    p.add_argument(
        "--tasks",
        default="sts",
        help="sts | transfer | full | geometry | clustering | comma-separated task names (cluster:FILE.csv for "
        "your own clustering set); default: %(default)s",
    )
    p.add_argument(
        "--mode", default="test", choices=("test", "dev", "fasttest"), help="SentEval's evaluation mode"
    )
    p.add_argument(
        "--aggregate", default="all", choices=("all", "mean", "wmean"), help="STS12-16 aggregation"
    )
    p.add_argument(
        "--metric", default="spearman", choices=("spearman", "pearson"), help="STS metric in the table"
    )
    p.add_argument(
        "--pooler",
        default=None,
        help="override the pooler (cls, cls_before_pooler, avg, avg_top2, avg_first_last, avg_first_last_emb, "
        "prompt: PromptBERT's template [MASK] state)",
    )
    p.add_argument(
        "--prompt-template",
        default=None,
        metavar="TEMPLATE",
        help="with --pooler prompt: the template, [X] for the sentence, [MASK] for the embedding (default: the "
        "model's saved one, else the paper's 'This sentence : \"[X]\" means [MASK] .')",
    )
    p.add_argument(
        "--prompt-denoise",
        action="store_true",
        help="with --pooler prompt: subtract the template's own [MASK] state (PromptBERT's template denoising)",
    )
    p.add_argument("--data-dir", default=None, help="data directory (default $SIMCSE_DATA_DIR)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="sentences per batch")
    add_precision_options(p)
    p.add_argument(
        "--cache-dir", default=None, help="cache embeddings here, keyed by model fingerprint and sentences"
    )
    p.add_argument("--whiten", default=None, metavar="CORPUS", help="fit whitening on a text file, or 'self'")
    p.add_argument(
        "--whiten-dim", type=positive_int, default=None, metavar="K", help="keep K whitened dimensions"
    )
    p.add_argument("--seed", type=int, default=1111, help="seed of the transfer-task classifier and folds")
    p.add_argument(
        "--classifier",
        default="senteval",
        choices=("senteval", "lbfgs"),
        help="transfer tasks: SentEval's classifier (the paper's protocol) or a deterministic L-BFGS fit",
    )
    p.add_argument(
        "--seeds",
        action="store_true",
        help="the models are runs of one setting (seeds): also print their mean ± sample std and n",
    )
    p.add_argument("--output", default=None, help="write results as JSON")
    p.add_argument("--csv", default=None, help="append one row per model to this CSV")
    p.add_argument("--no-download", action="store_true", help="never download missing data")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate each model, print the tables (and the seed summary with ``--seeds``), append ``--csv`` rows
    and write ``--output``; the output paths are checked before the evaluation starts."""
    from simcse.cli.options import flags, model_arg, say
    from simcse.core.files import check_output_dir, check_output_file
    from simcse.core.precision_options import precision_of
    from simcse.core.provenance import provenance
    from simcse.evaluation.report import (
        append_csv,
        markdown_tables,
        seed_summary,
        seed_summary_table,
        write_json,
    )
    from simcse.evaluation.suite import evaluate

    # checked before the (possibly hour-long) evaluation, not after it
    if args.whiten_dim is not None and args.whiten is None:
        raise SimCSEError("--whiten-dim needs --whiten CORPUS (or --whiten self)")
    if args.seeds and len(args.models or []) < 2:
        raise SimCSEError("--seeds needs two or more runs of one setting (give several MODELs)")
    for path, option in ((args.output, "--output"), (args.csv, "--csv")):
        if path:
            check_output_file(path, option)
    if args.cache_dir:
        check_output_dir(args.cache_dir, "--cache-dir")
    _note_slow_classifier(args)
    results = []
    for name in args.models or ["default"]:
        model = model_arg(name)
        passed = flags(
            args,
            "tasks",
            "mode",
            "aggregate",
            "data_dir",
            "batch_size",
            "cache_dir",
            "whiten",
            "whiten_dim",
            "pooler",
            "prompt_template",
            "seed",
            "classifier",
        )
        result = evaluate(
            model,
            **passed,
            **precision_of(args),
            prompt_denoise="always" if args.prompt_denoise else None,
            show_progress=not args.quiet,
            download=not args.no_download,
        )
        if result.get("precision"):
            say(f"{name}: {result['precision']}")
        result["name"] = EMBEDDED_NAME if model is None else name
        result["metric"] = args.metric
        results.append(result)
        if args.csv:
            append_csv(result, args.csv, args.metric)
    print(markdown_tables(results, args.metric))
    summary = None
    if args.seeds:
        summary = seed_summary(results, args.metric)
        print("\n" + seed_summary_table(summary))
    if args.output:
        payload = results[0] if len(results) == 1 else {"runs": results}
        if summary is not None:
            payload = {"runs": results, "seeds": summary}
        payload["provenance"] = provenance()  # what the docs' results pages stamp the table with
        try:
            write_json(payload, args.output)
        except OSError as e:  # after the check: the disk filled up, say (the tables above are printed)
            raise SimCSEError(f"{args.output}: cannot write --output ({e.strerror or e})") from e
    return 0


def _note_slow_classifier(args: argparse.Namespace) -> None:
    """SentEval's classifier in test mode is thousands of mini-batch fits: fine on a GPU, long on a CPU."""
    import sys

    import torch

    from simcse.evaluation.tasks import TRANSFER_TASKS, resolve_tasks

    try:
        transfer = set(resolve_tasks(args.tasks, args.mode)) & set(TRANSFER_TASKS)
    except SimCSEError:
        return  # the evaluation reports the bad task list itself
    if transfer and args.classifier == "senteval" and args.mode == "test" and not torch.cuda.is_available():
        print(
            "simcse: SentEval's classifier in test mode on the CPU can take over an hour for all the "
            "transfer tasks on 2 cores; --mode fasttest or --classifier lbfgs take minutes",
            file=sys.stderr,
        )
