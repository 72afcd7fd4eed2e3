"""The ``simcse`` command: argument parsing only; each subcommand calls the library.

Errors caused by input (config, data, model, network) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from simcse.errors import SimCSEError


def _train_help() -> str:
    import inspect
    import re

    from simcse.config import TrainConfig

    lines = ["options (every config key; YAML values are overridden by flags):"]
    left = set(TrainConfig.field_names())
    for line in inspect.getsource(TrainConfig).splitlines():
        if not left:
            break  # the method section headings that follow are not option groups
        m = re.match(r"\s{4}(\w+): [^=]+= (.+?)(?:\s+#\s*(.*))?$", line)
        if m and m.group(1) in left:
            left.discard(m.group(1))
            default = "{}" if m.group(1) == "extra" else m.group(2).rstrip()
            lines.append(
                f"  --{m.group(1):<28} default {default}" + (f"; {m.group(3)}" if m.group(3) else "")
            )
        elif re.match(r"\s{4}# ---", line):
            lines.append(line.strip().lstrip("# -").strip() + ":")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    from simcse.config import TrainConfig, parse_flags
    from simcse.train import train

    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    config = config.override(parse_flags(rest))
    train(config, resume=args.resume)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from simcse.evaluation.report import append_csv, markdown_tables, write_json
    from simcse.evaluation.suite import evaluate

    results = []
    for model in args.models or [None]:
        result = evaluate(
            model,
            tasks=args.tasks,
            mode=args.mode,
            aggregate=args.aggregate,
            data_dir=args.data_dir,
            batch_size=args.batch_size,
            dtype=torch.bfloat16 if args.bf16 else None,
            cache_dir=args.cache_dir,
            whiten=args.whiten,
            whiten_dim=args.whiten_dim,
            pooler=args.pooler,
            seed=args.seed,
            show_progress=not args.quiet,
            download=not args.no_download,
        )
        result["name"] = model or "all-MiniLM-L6-v2"
        result["metric"] = args.metric
        results.append(result)
        if args.csv:
            append_csv(result, args.csv, args.metric)
    print(markdown_tables(results, args.metric))
    if args.output:
        write_json(results[0] if len(results) == 1 else {"runs": results}, args.output)
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from simcse.download import main_download

    return main_download(args.names, args.dir, base_url=args.base_url, force=args.force)


def build_parser() -> argparse.ArgumentParser:
    from simcse import __version__

    parser = argparse.ArgumentParser(
        prog="simcse", description="Train, evaluate and use SimCSE sentence embeddings.", allow_abbrev=False
    )
    parser.add_argument("--version", action="version", version=f"simcse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train",
        help="train a SimCSE model (unsup or sup)",
        description="simcse train [CONFIG.yaml] [--key value ...] [--resume]",
        epilog=_train_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help="YAML recipe (configs/*.yaml); optional")
    p.add_argument(
        "--resume", action="store_true", help="continue from the newest intact checkpoint in output_dir"
    )

    p = sub.add_parser("eval", help="evaluate encoders on STS, transfer tasks and geometry")
    p.add_argument(
        "models",
        nargs="*",
        help="saved simcse model, sentence-transformers dir or HF model (default: embedded)",
    )
    p.add_argument(
        "--tasks", default="sts", help="sts | transfer | full | geometry | comma-separated SentEval names"
    )
    p.add_argument("--mode", default="test", choices=("test", "dev", "fasttest"))
    p.add_argument(
        "--aggregate", default="all", choices=("all", "mean", "wmean"), help="STS12-16 aggregation"
    )
    p.add_argument(
        "--metric", default="spearman", choices=("spearman", "pearson"), help="STS metric in the table"
    )
    p.add_argument(
        "--pooler",
        default=None,
        help="override the pooler (cls, cls_before_pooler, avg, avg_top2, avg_first_last)",
    )
    p.add_argument("--data-dir", default=None, help="data directory (default $SIMCSE_DATA_DIR)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--bf16", action="store_true", help="encode under bf16 autocast")
    p.add_argument(
        "--cache-dir", default=None, help="cache embeddings here, keyed by model fingerprint and sentences"
    )
    p.add_argument("--whiten", default=None, metavar="CORPUS", help="fit whitening on a text file, or 'self'")
    p.add_argument("--whiten-dim", type=int, default=None, metavar="K", help="keep K whitened dimensions")
    p.add_argument("--seed", type=int, default=1111, help="seed of the transfer-task folds")
    p.add_argument("--output", default=None, help="write results as JSON")
    p.add_argument("--csv", default=None, help="append one row per model to this CSV")
    p.add_argument("--no-download", action="store_true", help="never download missing data")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("data", help="data sets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    d = data_sub.add_parser(
        "download", help="download SentEval, wiki1m or NLI data from princeton-nlp/datasets-for-simcse"
    )
    d.add_argument("names", nargs="+", choices=("senteval", "wiki1m", "nli", "all"))
    d.add_argument(
        "--dir", default=None, help="data directory (default $SIMCSE_DATA_DIR, then ~/.cache/simcse/data)"
    )
    d.add_argument("--base-url", default=None, help="mirror of the Hugging Face dataset")
    d.add_argument("--force", action="store_true", help="download again even if present")
    return parser


def split_train_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """``train [CONFIG] [--resume] [--key value ...]``: argparse would take a flag's value for CONFIG."""
    config = argv[0] if argv and not argv[0].startswith("-") else None
    rest = argv[1:] if config else argv
    resume = "--resume" in rest
    return argparse.Namespace(command="train", config=config, resume=resume), [
        a for a in rest if a != "--resume"
    ]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["train"] and not {"-h", "--help"} & set(argv):
        args, rest = split_train_args(argv[1:])
    else:
        args, rest = parser.parse_args(argv), []
    try:
        if args.command == "train":
            return cmd_train(args, rest)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "data":
            return cmd_data_download(args)
    except SimCSEError as e:
        print(f"simcse: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simcse: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
