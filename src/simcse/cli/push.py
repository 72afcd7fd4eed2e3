"""``simcse push DIR REPO``: publish a model directory to the Hugging Face Hub."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse push`` and its options to ``sub``."""
    p = sub.add_parser(
        "push",
        help="publish a model directory to the Hugging Face Hub",
        description="Uploads DIR (what simcse train or simcse export wrote) to the Hub repo REPO in one "
        "commit, creating the repo if needed. Training leftovers (checkpoints/, tensorboard/, *.tmp, the "
        ".simcse-files manifest) are not uploaded.",
    )
    p.add_argument("model_dir", metavar="DIR", help="the model directory")
    p.add_argument("repo", metavar="REPO", help="NAME (under the token's account) or OWNER/NAME")
    p.add_argument(
        "--private", action="store_true", help="create the repo private (an existing one is unchanged)"
    )
    p.add_argument(
        "--revision",
        metavar="BRANCH",
        default=None,
        help="branch to push to, created if missing (default main)",
    )
    p.add_argument("--commit-message", metavar="MSG", default=None, help="the commit's message")
    p.add_argument(
        "--token",
        default=None,
        help="a Hugging Face token with write access (default $HF_TOKEN, then the one `hf auth login` saved)",
    )
    p.add_argument(
        "--endpoint",
        metavar="URL",
        default=None,
        help="the Hub to push to (default $HF_ENDPOINT, then https://huggingface.co)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Publish the model directory (:func:`simcse.data.hub.push_model`) and print the repository's URL."""
    from simcse.cli.options import flags
    from simcse.data.hub import push_model

    passed = flags(args, "private", "revision", "commit_message", "token", "endpoint")
    url = push_model(args.model_dir, args.repo, **passed)
    print(f"pushed {args.model_dir} to {url}")
    return 0
