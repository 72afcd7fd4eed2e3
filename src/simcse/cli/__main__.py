"""``python -m simcse.cli``: the same as the ``simcse`` command."""

import sys

from simcse.cli import main

sys.exit(main())
