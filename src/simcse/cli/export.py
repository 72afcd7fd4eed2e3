"""``simcse export MODEL --to sentence-transformers|hf DIR``."""

from __future__ import annotations

import argparse

from simcse.cli.options import MODEL_HELP, add_model_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model as a sentence-transformers or Hugging Face directory",
        description="sentence-transformers: SentenceTransformer(DIR).encode gives this model's embeddings. "
        "hf: AutoModel.from_pretrained(DIR) loads it; for the cls pooler the SimCSE MLP is the BERT "
        "pooler layer, so pooler_output is the embedding (as in princeton-nlp's released checkpoints). "
        "The export is checked against the model before it is moved into DIR.",
    )
    # required: the embedded model is already a sentence-transformers directory, and an optional MODEL
    # before the DIR positional would make argparse read `export RUN --to hf DIR` as DIR=RUN
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--to", required=True, choices=("sentence-transformers", "hf"))
    p.add_argument("out_dir", metavar="DIR")
    add_model_options(p)
    p.add_argument(
        "--st-layout",
        choices=("compatible", "current"),
        default="compatible",
        help="sentence-transformers file names: compatible (loaded by sentence-transformers 3.0.1 to 6.x) or "
        "current (6.x's own module paths and config keys; 5.4+ only)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simcse.cli.options import model_arg
    from simcse.export import export_model

    model = model_arg(args.model)
    out = export_model(
        model, args.out_dir, args.to, pooler=args.pooler, overwrite=args.overwrite, st_layout=args.st_layout
    )
    name = args.model if model is not None else "the embedded model"
    print(f"exported {name} as {args.to}: {out}")
    return 0
