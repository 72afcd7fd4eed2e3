"""The ``simcse`` command: argument parsing only; each subcommand calls the library.

Errors caused by input (config, data, model, network) print one line and exit with status 2.

Where a subcommand takes a MODEL it is a saved simcse model, a sentence-transformers directory, a Hugging Face
model id or directory, or ``default`` (also ``-``) for the embedded all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from simcse.errors import SimCSEError
from simcse.files import refuse_non_empty, replace_directory


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


DEFAULT_MODEL_NAMES = ("default", "-")
MODEL_HELP = (
    "saved simcse model, sentence-transformers dir, HF model id/dir, or 'default' (the embedded model)"
)


def model_arg(value: str | None) -> str | None:
    """The model as the library takes it: None for the embedded default."""
    return None if value is None or value in DEFAULT_MODEL_NAMES else value


def _local_or_id(value: str | None) -> str | None:
    """An absolute path for a local model (so an index records a path that works from any directory)."""
    model = model_arg(value)
    if model is not None and Path(model).expanduser().is_dir():
        return str(Path(model).expanduser().resolve())
    return model


def _dtype(bf16: bool):
    import torch

    return torch.bfloat16 if bf16 else None


def cmd_similarity(args: argparse.Namespace) -> int:
    from simcse.api import SimCSE

    model = SimCSE(model_arg(args.model), pooler=args.pooler, dtype=_dtype(args.bf16))
    print(f"{model.similarity(args.sentence_a, args.sentence_b):.4f}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from simcse.corpus import encode_corpus

    encode_corpus(
        model_arg(args.model),
        args.input,
        args.output,
        batch_size=args.batch_size,
        max_length=args.max_length,
        pooler=args.pooler,
        dtype=_dtype(args.bf16),
        normalize=not args.no_normalize,
        shard_size=args.shard_size,
        block_size=args.block_size,
        overwrite=args.overwrite,
        show_progress=not args.quiet,
        log=lambda message: print(message, file=sys.stderr),
    )
    return 0


def cmd_index_build(args: argparse.Namespace) -> int:
    from simcse.api import SimCSE

    out = Path(args.out)
    refuse_non_empty(out, args.overwrite)
    if not Path(args.input).is_file():
        raise SimCSEError(f"{args.input}: input file not found")
    start = time.perf_counter()
    model = SimCSE(_local_or_id(args.model), pooler=args.pooler, dtype=_dtype(args.bf16))
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
    assert model.index is not None
    print(f"indexed {len(model.sentences)} sentences ({model.dim}-dim, {model.index.resolved_kind}) "
          f"in {seconds:.1f} s: {out}")  # fmt: skip
    return 0


def _index_model(directory: Path) -> tuple[str | None, str | None]:
    """The model an index was built with and the pooler it used, from DIR/model.json."""
    from simcse.api import MODEL_FILE
    from simcse.encoder import EMBEDDED_MODEL

    path = directory / MODEL_FILE
    if not directory.is_dir():
        raise SimCSEError(f"{directory}: index directory not found")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        source, pooler = saved["source"], saved.get("pooler")
    except FileNotFoundError as e:
        raise SimCSEError(f"{path}: not found; pass --model to say which model built the index") from e
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SimCSEError(f"{path}: cannot read the model of the index ({e}); pass --model") from e
    return (None if source in ("", EMBEDDED_MODEL) else str(source)), pooler


def cmd_search(args: argparse.Namespace) -> int:
    from simcse.api import SimCSE

    directory = Path(args.index_dir)
    if args.model is not None:
        model = SimCSE(model_arg(args.model), pooler=args.pooler)
    else:
        source, pooler = _index_model(directory)
        try:
            model = SimCSE(source, pooler=args.pooler)
            if args.pooler is None and pooler and model.encoder.inference_pooler != pooler:
                model = SimCSE(source, pooler=pooler)  # the index was built with a pooler override
        except SimCSEError as e:
            raise SimCSEError(
                f"{directory}: cannot load the model it was built with ({e}); pass --model"
            ) from e
    model.load_index(directory)
    results = model.search(list(args.queries), top_k=args.top_k, threshold=args.threshold)
    if args.json:
        rows = [{"query": q, "results": [{"sentence": s, "score": round(score, 6)} for s, score in hits]}
                for q, hits in zip(args.queries, results)]  # fmt: skip
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for n, (query, hits) in enumerate(zip(args.queries, results)):
        if len(args.queries) > 1:
            print(("\n" if n else "") + f"query: {query}")
        if not hits:
            print("(no result above the threshold)")
        for sentence, score in hits:
            print(f"{score:.4f}\t{sentence}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from simcse.export import export_model

    model = model_arg(args.model)
    out = export_model(model, args.out_dir, args.to, pooler=args.pooler, overwrite=args.overwrite)
    name = args.model if model is not None else "the embedded model"
    print(f"exported {name} as {args.to}: {out}")
    return 0


SERVE_EXTRA = "pip install 'simcse[serve]'"


def _add_serve_parser(sub: argparse._SubParsersAction, with_options: bool) -> None:
    """The serve options come from :mod:`simcse.serve`, imported only when the command is ``serve`` (so
    other commands and ``simcse --help`` never import it, nor fastapi)."""
    p = sub.add_parser("serve", help="serve encode / similarity / search over HTTP (needs simcse[serve])")
    add_arguments = None
    if with_options:
        try:
            from simcse import serve

            add_arguments = getattr(serve, "add_arguments", None)
            reason = "simcse.serve has no add_arguments()"
        except ImportError as e:
            reason = str(e)
    if add_arguments is None:
        p.add_argument("serve_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        if with_options:
            p.set_defaults(serve_unavailable=reason)
        return
    add_arguments(p)


def cmd_serve(args: argparse.Namespace) -> int:
    unavailable = getattr(args, "serve_unavailable", None)
    if unavailable:
        raise SimCSEError(f"simcse serve is unavailable ({unavailable}); {SERVE_EXTRA}")
    from simcse import serve

    try:
        return int(serve.run(args))
    except ImportError as e:
        if (e.name or "").split(".")[0] in ("fastapi", "uvicorn", "starlette", "pydantic", "httpx"):
            raise SimCSEError(f"simcse serve needs {e.name}: {SERVE_EXTRA}") from e
        raise


def _add_model_options(
    p: argparse.ArgumentParser, batch_size: int | None = None, bf16_help: str | None = None
) -> None:
    """--pooler, plus --batch-size and --bf16 for the commands that encode (when given)."""
    if batch_size is not None:
        p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--pooler", default=None, help="override the pooler")
    if bf16_help is not None:
        p.add_argument("--bf16", action="store_true", help=bf16_help)


BF16_HELP = "encode under bf16 autocast"


def build_parser(serve_options: bool = False) -> argparse.ArgumentParser:
    """The argument parser; ``serve_options`` imports :mod:`simcse.serve` for the ``serve`` options."""
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

    p = sub.add_parser(
        "similarity",
        help="cosine similarity of two sentences",
        description="Print the cosine similarity of two sentences (4 decimals). "
        "MODEL is required; 'default' (or '-') is the embedded all-MiniLM-L6-v2.",
    )
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("sentence_a", metavar="A")
    p.add_argument("sentence_b", metavar="B")
    _add_model_options(p, bf16_help=BF16_HELP)

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
    _add_model_options(p, batch_size=128, bf16_help=BF16_HELP + " (output stays float32)")
    p.add_argument("--max-length", type=int, default=None, help="truncate to this many tokens")
    p.add_argument("--no-normalize", action="store_true", help="keep raw embeddings (default: unit length)")
    p.add_argument(
        "--shard-size", type=int, default=None, metavar="N",
        help="lines per shard (default: the interrupted run's when resuming, else 100000)",
    )  # fmt: skip
    p.add_argument(
        "--block-size", type=int, default=8192, metavar="N", help="lines read and length-sorted together"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--resume", dest="overwrite", action="store_false",
        help="(default) reuse the verified shards of an interrupted run with the same model, input and settings",
    )  # fmt: skip
    g.add_argument(
        "--overwrite", dest="overwrite", action="store_true",
        help="replace an existing output and discard the shards of an earlier run",
    )  # fmt: skip
    p.set_defaults(overwrite=False)  # --resume is store_false: its own default would be True
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("index", help="vector indexes of sentences")
    index_sub = p.add_subparsers(dest="index_command", required=True)
    d = index_sub.add_parser(
        "build",
        help="encode a text file and save a searchable index",
        description="Encode --input (one sentence per line; blank lines skipped) and save the index, "
        "the sentences and the model's name to --out, for `simcse search`.",
    )
    d.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    d.add_argument("--input", required=True, help="UTF-8 text file, one sentence per line")
    d.add_argument("--out", required=True, help="index directory to write")
    d.add_argument("--index", default="auto", choices=("auto", "flat", "ivf", "hnsw"),
                   help="auto: exact up to 100k sentences, IVF above (faiss)")  # fmt: skip
    _add_model_options(d, batch_size=64, bf16_help=BF16_HELP)
    d.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    d.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "search",
        help="search an index built by `simcse index build`",
        description="Print the indexed sentences most similar to each query (score<TAB>sentence, best "
        "first). The model recorded in DIR/model.json is used unless --model is given.",
    )
    p.add_argument("index_dir", metavar="DIR", help="index directory")
    p.add_argument("queries", metavar="QUERY", nargs="+")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--threshold", type=float, default=None, help="only results with a cosine >= this")
    p.add_argument("--model", default=None, help="the model to encode queries with (default: the index's)")
    _add_model_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser(
        "export",
        help="export a model as a sentence-transformers or Hugging Face directory",
        description="sentence-transformers: SentenceTransformer(DIR).encode gives this model's embeddings. "
        "hf: AutoModel.from_pretrained(DIR) loads it; for the cls pooler the SimCSE MLP is the BERT "
        "pooler layer, so pooler_output is the embedding (as in princeton-nlp's released checkpoints). "
        "The export is checked against the model before it is moved into DIR.",
    )
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--to", required=True, choices=("sentence-transformers", "hf"))
    p.add_argument("out_dir", metavar="DIR")
    _add_model_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR")

    _add_serve_parser(sub, serve_options)
    return parser


COMMANDS = {
    "similarity": cmd_similarity,
    "encode": cmd_encode,
    "search": cmd_search,
    "export": cmd_export,
    "serve": cmd_serve,
}


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
    parser = build_parser(serve_options=argv[:1] == ["serve"])
    if argv[:1] == ["train"] and not {"-h", "--help"} & set(argv):
        args, rest = split_train_args(argv[1:])
    elif argv[:1] == ["serve"]:
        args, rest = parser.parse_known_args(argv)
        if rest and not getattr(args, "serve_unavailable", None):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    else:
        args, rest = parser.parse_args(argv), []
    try:
        if args.command == "train":
            return cmd_train(args, rest)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "data":
            return cmd_data_download(args)
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
        if args.command == "index":
            return cmd_index_build(args)
    except SimCSEError as e:
        message = " ".join(str(e).split("\n"))  # one line, whatever the message (hub errors span lines)
        print(f"simcse: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simcse: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
