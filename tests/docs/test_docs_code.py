"""Every code block of the tutorials, how-to guides and README runs (tiny model, a few steps), so that the
documentation cannot rot; and no page describes "this machine" outside a stamped results table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.docs_blocks import DRIVER, ROOT, blocks, commands, for_test
from tests.helpers import head_lines

DOCS = ROOT / "docs"
RUN_PAGES = sorted(
    [ROOT / "README.md", DOCS / "index.md", DOCS / "getting-started.md"]
    + [p for folder in ("tutorials", "how-to", "methods", "analyses") for p in (DOCS / folder).glob("*.md")]
)
PROSE_PAGES = [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*.md"))]
MACHINE_WORDS = re.compile(
    r"\b(this (machine|CPU|project's (CPU|machine))|our (CPU|machine)|no GPU was lent|the machine it was)\b",
    re.I,
)


def test_every_page_with_code_is_tested_and_skips_say_why():
    assert len(RUN_PAGES) > 10, RUN_PAGES
    for page in RUN_PAGES:
        for block in blocks(page):
            assert block.skip_reason is None or len(block.skip_reason) > 10, (
                f"{block.where()}: say why it is not run"
            )
            if block.language == "console" and block.skip_reason is None:
                assert commands(block.code), f"{block.where()}: a console block without a `$ ` command line"


def test_the_substitutions(tiny_bert):
    from tests.docs.docs_blocks import for_test as sub

    code = 'SimCSE("princeton-nlp/sup-simcse-bert-base-uncased")\n$ simcse train x --max_steps 500 --max-train-samples 9\nmax_steps: 40'
    out = sub(code, "TINY")
    assert out == 'SimCSE("TINY")\n$ simcse train x --max_steps 2 --max-train-samples 256\nmax_steps: 2'
    assert commands("$ a \\\n  --b 1\noutput\n$ c &") == ["a --b 1", "c &"]


@pytest.fixture(scope="session")
def docs_data_dir(data_dir, tmp_path_factory) -> Path:
    """The data directory with every SentEval and raw STS file cut to its first 40 lines (the formats and
    names stay; an evaluation takes seconds); the training files whole (a run of 2 steps reads little)."""
    return head_lines(data_dir, tmp_path_factory.mktemp("docs-data"), 40, whole=("wiki", "nli"))


@pytest.mark.docs_pages
@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_code_runs(page: Path, tmp_path, tiny_bert, docs_data_dir):
    steps = []
    for block in blocks(page):
        if block.skip_reason is not None:
            continue
        code = for_test(block.code, str(tiny_bert))
        steps.append([block.where(), block.language, code if block.language == "python" else commands(code)])
    if not steps:
        pytest.skip(f"{page.name} has no code to run")
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    (tmp_path / "driver.py").write_text(DRIVER)
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "SIMCSE_DATA_DIR": str(docs_data_dir),
        "OMP_NUM_THREADS": "2",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "TQDM_DISABLE": "1",
    }
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "steps.json")],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-6000:])


def test_no_page_describes_the_machine_it_was_written_on():
    found = []
    for page in PROSE_PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if MACHINE_WORDS.search(line):
                found.append(f"{page.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_readme_is_short_and_opens_with_runnable_code():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode()) < 10_000, f"README.md is {len(text.encode())} bytes"
    first = blocks(ROOT / "README.md")
    python = [b for b in first if b.language == "python" and b.skip_reason is None]
    assert python and python[0].line <= 40, "a runnable Python example in README's first 40 lines"
