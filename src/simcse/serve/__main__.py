"""``python -m simcse.serve [MODEL] [--index DIR] ...``: the same as ``simcse serve``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from simcse.core.errors import SimCSEError
from simcse.serve import add_arguments, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simcse.serve", description="serve a SimCSE model over HTTP"
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except SimCSEError as e:
        print(f"simcse: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simcse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
