"""``simcse train [CONFIG.yaml|RECIPE] [--key value ...] [--resume]``: every TrainConfig key is a flag."""

from __future__ import annotations

import argparse

from simcse.training.config import option_help


def help_text() -> str:
    """Every config key with its default and help, by group, from the fields' metadata."""
    lines = ["options (every config key; YAML values are overridden by flags; --batch_size works too):"]
    for group, rows in option_help():
        lines.append(f"{group}:")
        lines += [
            f"  --{key.replace('_', '-'):<28} default {default}" + (f"; {text}" if text else "")
            for key, default, text in rows
        ]
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``simcse train`` to ``sub`` (for ``--help``; :func:`parse` reads the actual command line)."""
    p = sub.add_parser(
        "train",
        help="train a SimCSE model (unsup or sup)",
        description="simcse train [CONFIG.yaml] [--key value ...] [--resume]",
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config", nargs="?", help="a YAML config file, or a recipe's name (simcse recipes); optional"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the newest intact checkpoint in output_dir"
    )
    p.set_defaults(func=run, flags=[])


def parse(argv: list[str]) -> argparse.Namespace:
    """``[CONFIG] [--resume] [--key value ...]`` without argparse, which would take a flag's value for
    CONFIG; the flags are parsed by :func:`simcse.training.config.parse_flags`."""
    config = argv[0] if argv and not argv[0].startswith("-") else None
    rest = argv[1:] if config else argv
    flags = [a for a in rest if a != "--resume"]
    return argparse.Namespace(
        command="train", func=run, config=config, resume="--resume" in rest, flags=flags
    )


def run(args: argparse.Namespace) -> int:
    """Train with the config file or recipe (or the defaults), overridden by the flags."""
    from simcse.training.config import TrainConfig, parse_flags
    from simcse.training.config.recipes import recipe_path
    from simcse.training.loop import train

    config = TrainConfig.from_yaml(recipe_path(args.config)) if args.config else TrainConfig()
    config = config.override(parse_flags(args.flags))
    train(config, resume=args.resume)
    return 0
