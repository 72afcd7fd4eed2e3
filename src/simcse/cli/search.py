"""``simcse search DIR QUERY...``: the indexed sentences most similar to each query."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simcse.cli.options import add_model_options, positive_int
from simcse.core.errors import IndexModelError, SimCSEError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse search`` and its options to ``sub``."""
    p = sub.add_parser(
        "search",
        help="search an index built by `simcse index build`",
        description="Print the indexed sentences most similar to each query (score<TAB>sentence, best "
        "first). The model recorded in DIR/model.json is used unless --model is given.",
    )
    p.add_argument("index_dir", metavar="DIR", help="index directory")
    p.add_argument("queries", metavar="QUERY", nargs="+")
    p.add_argument("--top-k", type=positive_int, default=5, help="results per query")
    p.add_argument("--threshold", type=float, default=None, help="only results with a cosine >= this")
    p.add_argument("--model", default=None, help="the model to encode queries with (default: the index's)")
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def index_model(directory: Path) -> tuple[str | None, str | None]:
    """The model an index was built with and the pooler it used, from DIR/model.json."""
    from simcse.modeling.names import EMBEDDED_MODEL
    from simcse.use.index_dir import MODEL_FILE

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


def run(args: argparse.Namespace) -> int:
    """Load the index with the model recorded in it (or ``--model``) and print each query's hits, as text or
    ``--json``."""
    from simcse.cli.options import model_arg
    from simcse.use.api import SimCSE

    directory = Path(args.index_dir)
    if args.model is not None:
        model = SimCSE(model_arg(args.model), pooler=args.pooler)
    else:
        source, pooler = index_model(directory)
        try:
            model = SimCSE(source, pooler=args.pooler)
            if args.pooler is None and pooler and model.encoder.inference_pooler != pooler:
                model = SimCSE(source, pooler=pooler)  # the index was built with a pooler override
        except SimCSEError as e:
            raise SimCSEError(
                f"{directory}: cannot load the model it was built with ({e}); pass --model"
            ) from e
    from simcse.use.index_dir import MODEL_FILE

    # --model says which model built an index that does not record it; one that does is still checked
    check = args.model is None or (directory / MODEL_FILE).exists()
    try:
        model.load_index(directory, check_model=check)
    except IndexModelError as e:  # the Python API's advice (check_model=False) means nothing here
        raise SimCSEError(
            f"{e.problem}; search with the model recorded in {directory / 'model.json'} (the default), "
            "or with --model naming a copy of it"
        ) from e
    model.at_model_limit()  # CLI commands truncate at the model's own limit
    results = model.search(list(args.queries), top_k=args.top_k, threshold=args.threshold)
    if args.json:
        rows = [
            {"query": q, "results": [{"sentence": s, "score": round(score, 6)} for s, score in hits]}
            for q, hits in zip(args.queries, results)
        ]
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
