"""The pages the site generates from the code: every command, option and config key appears, and a results
file becomes a stamped table."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest

from tests.docs.docs_blocks import ROOT


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_pages", ROOT / "docs" / "gen_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_has_every_command_and_option(gen):
    from simcse.cli import build_parser

    text = "\n".join(gen.pages()["reference/cli.md"])
    for name, sub in gen.subcommands(build_parser()).items():
        assert f"## `simcse {name}`" in text
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in {"-h", "--help"}:
                    assert f"`{flag}`" in text, (name, flag)


def test_config_reference_has_every_key_with_its_default(gen):
    from simcse.training.config import TrainConfig

    text = "\n".join(gen.config_page())
    for f in dataclasses.fields(TrainConfig):
        assert f"| `{f.name}` |" in text, f.name
    assert "| `temperature` | `float` | `0.05` |" in text


def test_a_results_file_is_a_stamped_table(gen, tmp_path):
    from simcse.core.provenance import write_result

    path = write_result(tmp_path / "speed--x.json", "Encode speed", [{"backend": "onnx", "ratio": "2.10x"}])
    stamp = json.loads(path.read_text())["provenance"]
    assert set(stamp) == {"command", "cpu", "date", "commit", "simcse"}
    lines = gen.result_section(path)
    assert lines[0] == "## Encode speed"
    assert any(line.startswith("Measured with `") and stamp["cpu"] in line for line in lines)
    assert "| onnx | 2.10x |" in lines


def test_generated_pages_do_not_describe_the_machine_either(gen):
    from tests.docs.test_docs_code import MACHINE_WORDS

    for name in ("reference/cli.md", "reference/config.md", "reference/recipes.md"):
        found = [line for line in gen.pages()[name] if MACHINE_WORDS.search(line)]
        assert not found, (name, found)


def test_each_benchmark_results_file_is_on_the_results_page_with_its_cpu(gen, tmp_path, monkeypatch):
    """``benchmarks/results/<name>-<class>.md`` as written by bench_common.write_results: its table under
    its stamp, and for encode_speed a row of the table by CPU class."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_common import write_results

    summary = {
        "best": {"simcse onnx O2 int8": 500.0, "ST torch fp32": 250.0, "ST onnx int8": 330.0},
        "stsb_dev": {"simcse onnx O2 int8": 86.6, "simcse torch fp32": 86.7},
        "ours_fastest": "simcse onnx O2 int8",
        "st_fastest": "ST onnx int8",
        "vs_st_torch_fp32": 2.0,
        "vs_st_fastest": 500 / 330,
    }
    write_results(
        "encode_speed", ["| row | sentences/s |", "|---|---|", "| x | 500 |"], {"summary": summary}, tmp_path
    )
    monkeypatch.setattr(gen, "BENCHMARK_RESULTS", tmp_path)
    monkeypatch.setattr(gen, "EARLIER_ENCODE", tmp_path / "none.json")
    text = "\n".join(gen.results_page())
    assert "## Encoding speed by CPU class" in text and "| x | 500 |" in text
    row = next(line for line in text.splitlines() if "| simcse onnx O2 int8 | 500 |" in line)
    assert "| 2.00x | 1.52x (ST onnx int8) | -0.10 |" in row
    assert "- CPU: " in text and "flags: " in text and "- date: " in text and "- command: `" in text
