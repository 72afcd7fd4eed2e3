"""Run a command, show its output as it comes, and keep it as a stamped sample for the documentation:
``python scripts/record_output.py docs/results/quickstart--make-run.json "What make run prints" -- make run``.

The site's generator puts the sample where a page has ``<!-- sample: GROUP -->`` (the file name's part
before ``--``), under a line naming the command, the CPU, the date and the commit.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

from simcse.core.errors import SimCSEError
from simcse.core.files import check_output_file, write_text_atomic
from simcse.core.provenance import provenance


def portable(line: str) -> str:
    """The line as any machine would print it: the data directory and the home directory by name."""
    data = os.environ.get("SIMCSE_DATA_DIR")
    if data:
        line = line.replace(os.path.abspath(data), "$SIMCSE_DATA_DIR")
    return line.replace(os.path.expanduser("~"), "~")


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") != 2:
        print("usage: record_output.py OUT.json TITLE -- COMMAND ...", file=sys.stderr)
        return 2
    out, title, command = argv[0], argv[1], argv[3:]
    try:
        check_output_file(out, "OUT.json")  # before a run that may take an hour
    except SimCSEError as e:
        print(f"record_output: {e}", file=sys.stderr)
        return 2
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.strip() and "\r" not in line and not line.startswith(("encode:", "train:")):  # progress bars
            lines.append(portable(line.rstrip("\n")))
    if proc.wait() != 0:
        print(
            f"record_output: {shlex.join(command)} exited {proc.returncode}; nothing written", file=sys.stderr
        )
        return proc.returncode
    payload = {"title": title, "provenance": provenance(command), "text": "\n".join(lines)}
    payload["provenance"]["command"] = shlex.join(command)
    write_text_atomic(out, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
