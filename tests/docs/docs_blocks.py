"""The code blocks of the documentation, read as the docs test runs them.

A page's ```` ```python ```` blocks and the ``$ ``-lines of its ```` ```console ```` blocks run in document
order, in one process per page (so later blocks see earlier blocks' names and files), in a fresh directory.
The test swaps what a CPU-only test cannot have (documented in ``docs/reference/formats.md`` under "The
documentation's code blocks"):

- a hub model id (``bert-base-uncased``, ``princeton-nlp/...``, ``roberta-...``) becomes a tiny random BERT;
- ``max_steps`` (flag, keyword or YAML key) becomes 2, ``max_train_samples`` 256 (so runs stay seconds).

A block whose previous non-blank line is ``<!-- no-run: REASON -->`` is not run (a GPU, several machines,
a hub upload); the reason is required. A ``$ command &`` line starts a background process (a server),
stopped at the end of the page; the next block waits until its ``--port`` answers ``/health``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
NO_RUN = re.compile(r"<!--\s*no-run:\s*(.*?)\s*-->\s*$")
HUB_MODEL = re.compile(
    r"(?<![\w-])(princeton-nlp/[\w.-]+|(?:bert|roberta)-(?:base|large)(?:-uncased|-cased)?)(?![\w-])"
)
MAX_STEPS = re.compile(r"(max_steps(?:=|:\s*|\s+))\d+|(--max[_-]steps\s+)\d+")
MAX_SAMPLES = re.compile(r"(max_train_samples(?:=|:\s*|\s+))\d+|(--max[_-]train[_-]samples\s+)\d+")


@dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    skip_reason: str | None

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The python and console blocks of a page, each with its line and its no-run reason (if any)."""
    text = page.read_text(encoding="utf-8")
    out = []
    for match in FENCE.finditer(text):
        language = match.group(1)
        if language not in {"python", "console"}:
            continue
        before = [line for line in text[: match.start()].splitlines() if line.strip()]
        reason = NO_RUN.search(before[-1]) if before else None
        line = text.count("\n", 0, match.start()) + 1
        out.append(Block(page, line, language, match.group(2), reason.group(1) if reason else None))
    return out


def for_test(code: str, tiny_model: str) -> str:
    """The block as the test runs it: a tiny model, a few steps."""
    code = HUB_MODEL.sub(tiny_model, code)
    code = MAX_STEPS.sub(lambda m: (m.group(1) or m.group(2)) + "2", code)
    return MAX_SAMPLES.sub(lambda m: (m.group(1) or m.group(2)) + "256", code)


def commands(console: str) -> list[str]:
    """The ``$ `` lines of a console block, with their ``\\`` continuations joined; the rest is output."""
    out: list[str] = []
    pending: str | None = None
    for line in console.splitlines():
        if pending is not None:
            pending += " " + line.strip().removesuffix("\\").strip()
            if not line.rstrip().endswith("\\"):
                out.append(pending)
                pending = None
        elif line.startswith("$ "):
            command = line[2:].strip()
            if command.endswith("\\"):
                pending = command.removesuffix("\\").strip()
            else:
                out.append(command)
    return out


DRIVER = r"""
import json, os, re, shlex, signal, subprocess, sys, time, urllib.request
steps = json.load(open(sys.argv[1]))
background = []
namespace = {"__name__": "__main__"}

def wait_for(command):
    port = re.search(r"--port[ =](\d+)", command)
    url = f"http://127.0.0.1:{port.group(1) if port else 8000}/health"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{command!r} did not answer {url} in 180 s")

try:
    for where, language, code in steps:
        print(f"--- {where}", flush=True)
        if language == "python":
            exec(compile(code, where, "exec"), namespace)
            continue
        for command in code:
            if command.endswith("&"):
                background.append(subprocess.Popen(command[:-1], shell=True, start_new_session=True))
                wait_for(command)
                continue
            if command.startswith("simcse ") and not any(c in command for c in "|<>&;$`*?"):
                # in this process: a command costs its work, not another interpreter and torch import
                from simcse.cli import main
                try:
                    code = main(shlex.split(command)[1:])
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                if code:
                    raise SystemExit(f"{where}: `{command}` exited {code}")
                continue
            done = subprocess.run(command, shell=True, executable="/bin/bash")
            if done.returncode != 0:
                raise SystemExit(f"{where}: `{command}` exited {done.returncode}")
finally:
    for process in background:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
"""
