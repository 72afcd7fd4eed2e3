"""benchmarks/bench_common.py: a benchmark's child that fails becomes a row saying why, and a data directory
without the Wikipedia sentences is one line naming the fetch command, before anything runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench_common(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_common

    return bench_common


def test_run_child_returns_the_last_result_line(bench_common):
    code = "print('RESULT {\"x\": 1}'); print('noise'); print('RESULT {\"x\": 2}')"
    assert bench_common.run_child([sys.executable, "-c", code]) == {"x": 2}


@pytest.mark.parametrize(("code", "why"), [
    ("import sys; print('RESULT {}'); sys.exit('out of memory at step 2')", "out of memory at step 2"),
    ("import sys; sys.exit(3)", "exit code 3"),
    ("print('no result line')", "exit code 0"),
])  # fmt: skip
def test_a_failing_child_is_one_line_saying_why(bench_common, capsys, code, why):
    assert bench_common.run_child([sys.executable, "-c", code]) == {"failed": why}
    assert "failed" in capsys.readouterr().err  # the end of its stderr, for whoever reads the log


def test_wiki_sentences_are_the_samples_first_lines_or_one_line_naming_the_fetch(bench_common, tmp_path):
    wiki = tmp_path / "wiki"
    wiki.mkdir()
    lines = [f"sentence {i}" for i in range(bench_common.WIKI_ROWS + 5)]
    (wiki / "wiki1m_for_simcse.txt").write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n")
    got = bench_common.wiki_sentences(tmp_path)
    assert got == lines[: bench_common.WIKI_ROWS - 1]  # the first WIKI_ROWS lines, the blank one dropped
    with pytest.raises(SystemExit) as exit_:
        bench_common.wiki_sentences(tmp_path / "nothing")
    message = str(exit_.value)
    assert "\n" not in message and "wiki1m_for_simcse.txt" in message
    assert "simcse data download wiki1m" in message
