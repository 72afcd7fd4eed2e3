"""The pages of the site that come from the code and from results files, written at build time by
mkdocs-gen-files: the CLI reference from the real argparse parsers, the config reference from TrainConfig's
field metadata, the recipes from the packaged YAML files, and the results pages from ``docs/results/*.json``.
Nothing here is copied by hand, so none of it can drift from the code.

Run alone (``python docs/gen_pages.py OUT_DIR``) it writes the same pages into OUT_DIR, for a look without
mkdocs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

DOCS = Path(__file__).resolve().parent
RESULTS = DOCS / "results"
BENCHMARK_RESULTS = DOCS.parent / "benchmarks" / "results"  # <benchmark>-<CPU class>.md / .json
# encode_speed results of CPU classes measured before the benchmark wrote its own results files
EARLIER_ENCODE = RESULTS / "performance--encode-backends.json"


def prose(text: object) -> str:
    """Help text as markdown: brackets are literal (``[--key value ...]`` is not a link)."""
    return str(text).replace("[", "\\[").replace("]", "\\]")


def code_cell(text: object) -> str:
    """A value for a code span inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def cell(text: object) -> str:
    """A value safe inside a markdown table cell."""
    return prose(text).replace("|", "\\|").replace("\n", " ")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def option_rows(parser: argparse.ArgumentParser) -> Iterator[str]:
    formatter = parser._get_formatter()
    for action in parser._actions:
        if (
            isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
            or action.help == argparse.SUPPRESS
        ):
            continue
        name = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}` (positional)"
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            name += "<br>one of " + ", ".join(f"`{c}`" for c in action.choices)
        default = action.default
        shown = (
            ""
            if default in (None, argparse.SUPPRESS) or action.nargs == 0 and default is False
            else f"`{default}`"
        )
        yield f"| {name} | {shown} | {cell(formatter._expand_help(action) if action.help else '')} |"


def cli_page(parser: argparse.ArgumentParser, prefix: str = "simcse", depth: int = 2) -> list[str]:
    """One section per command (and per sub-command), each with its usage and every option."""
    lines: list[str] = []
    for name, sub in subcommands(parser).items():
        title = f"{prefix} {name}"
        lines += [f"{'#' * depth} `{title}`", ""]
        if sub.description:
            lines += [prose(sub.description.replace("\n", " ")), ""]
        usage = sub.format_usage().removeprefix("usage: ").strip()
        lines += ["```text", usage, "```", ""]
        rows = list(option_rows(sub))
        if rows:
            lines += ["| option | default | meaning |", "|---|---|---|", *rows, ""]
        if name == "train":
            lines += [
                "Every key of the [configuration reference](config.md) is also a flag of `simcse train`.",
                "",
            ]
        lines += cli_page(sub, title, depth + 1)
    return lines


def type_name(hint: object) -> str:
    text = getattr(hint, "__name__", None) if not typing.get_args(hint) else None
    return text or str(hint).replace("typing.", "")


def config_page() -> list[str]:
    """Every TrainConfig key by group: type, default, the allowed names and the help line."""
    from simcse.training.config import TrainConfig
    from simcse.training.config.parsing import shown

    hints = typing.get_type_hints(TrainConfig)
    groups: dict[str, list[str]] = {}
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        meaning = f.metadata["help"]
        if f.metadata.get("choices") and not all(c in meaning for c in f.metadata["choices"]):
            meaning += " One of " + ", ".join(f"`{c}`" for c in f.metadata["choices"]) + "."
        row = f"| `{f.name}` | `{code_cell(type_name(hints[f.name]))}` | `{code_cell(shown(default))}` | {cell(meaning)} |"
        groups.setdefault(f.metadata["group"], []).append(row)
    lines = [
        "# Configuration keys",
        "",
        "Every key of a training config, from the fields of `simcse.training.config.TrainConfig` (generated at",
        "build time). A key is written the same way in a YAML file (`batch_size: 64`), as a flag of",
        "`simcse train` (`--batch_size 64` or `--batch-size 64`) and as a keyword of `TrainConfig(...)`.",
        "Invalid combinations are refused before training starts, all problems in one message.",
        "",
    ]
    for group, rows in groups.items():
        lines += [f"## {group}", "", "| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    return lines


def recipes_page() -> list[str]:
    from simcse.training.config.recipes import RECIPES_DIR, builtin_recipes, summary

    lines = [
        "# Recipes",
        "",
        "The recipes that ship inside the package (`simcse recipes` lists them). Each name works wherever a",
        "config file does: `simcse train NAME [--key value ...]`, `simcse experiment GRID --base NAME`.",
        "",
    ]
    for name in builtin_recipes():
        text = (RECIPES_DIR / f"{name}.yaml").read_text(encoding="utf-8")
        lines += [
            f"## `{name}`",
            "",
            summary(RECIPES_DIR / f"{name}.yaml"),
            "",
            "```yaml",
            text.rstrip(),
            "```",
            "",
        ]
    return lines


def stamp_lines(provenance: dict) -> list[str]:
    """What produced a table: the command, the CPU, the date and the commit."""
    return [
        f"Measured with `{provenance['command']}` on {provenance['cpu']}, {provenance['date']}, "
        f"commit `{provenance['commit']}` (simcse {provenance['simcse']}).",
        "",
    ]


def table(rows: list[dict], columns: list[str] | None = None) -> list[str]:
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows),
    ]


def result_section(path: Path) -> list[str]:
    """One results file as a section: its title, what produced it, its table(s)."""
    from simcse.evaluation.report import markdown_tables

    data = json.loads(path.read_text(encoding="utf-8"))
    lines = [f"## {data.get('title', path.stem)}", ""]
    if data.get("about"):
        lines += [data["about"], ""]
    lines += stamp_lines(data["provenance"])
    if "text" in data:  # a command's output, kept by scripts/record_output.py
        lines += ["```text", data["text"], "```"]
    elif "rows" in data:  # a benchmark's rows
        lines += table(data["rows"], data.get("columns"))
    else:  # what ``simcse eval --output`` writes: one run, or {"runs": [...]}
        runs = data.get("runs", [data])
        lines += markdown_tables(runs, runs[0].get("metric", "spearman")).splitlines()
    return [*lines, ""]


def results_page() -> list[str]:
    """``docs/results/GROUP--NAME.json`` files as one page, a section per GROUP."""
    lines = [
        "# Results",
        "",
        "Every number here was written by the command named above its table, on the CPU, date and commit",
        "named there; the page is generated from the results files in `docs/results/` at build time. Your",
        "machine will give other absolute times: the benchmarks report ratios against a peer run in the same",
        "process tree, which carry over better.",
        "",
    ]
    lines += encode_by_cpu() + benchmark_sections()
    groups: dict[str, list[Path]] = {}
    for path in sorted(RESULTS.glob("*.json")):
        groups.setdefault(path.stem.split("--")[0], []).append(path)
    for group, paths in groups.items():
        lines += [f"## {group.replace('-', ' ').capitalize()}", ""]
        for path in paths:
            lines += ["#" + line if line.startswith("## ") else line for line in result_section(path)]
    return lines


ST_FASTEST = "vs ST's fastest"


def speed(text: str) -> float:
    """A table cell's sentences/s (0 for a row that did not run)."""
    try:
        return float(str(text).strip("*"))
    except ValueError:
        return 0.0


def _cpu_row(
    cpu: str, fastest: str, per_s: float, vs_base: str, vs_fastest: str, dev: str, stamp: dict
) -> dict:
    return {
        "CPU": cpu,
        "our fastest row": fastest,
        "sentences/s": f"{per_s:.0f}",
        "vs ST torch fp32": vs_base,
        "vs ST's fastest": vs_fastest,
        "STS-B dev vs fp32": dev,
        "date, commit": f"{stamp['date']}, `{stamp['commit']}`",
        "command": f"`{stamp['command']}`",
    }


def encode_by_cpu() -> list[str]:
    """One row per CPU class that ``benchmarks/encode_speed.py`` ran on: our fastest row and its ratios to
    sentence-transformers, from each results file (``encode_speed-<class>.json``, and the earlier table)."""
    rows = []
    for path in sorted(BENCHMARK_RESULTS.glob("encode_speed-*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        summary, cpu = data["summary"], data["cpu"]
        if "ours_fastest" not in summary:
            continue
        fastest, dev = summary["ours_fastest"], summary["stsb_dev"]
        name = f"{cpu['model']}, {cpu['cores']} cores ({cpu['class']}: {' '.join(cpu['flags'])})"
        rows.append(_cpu_row(name, fastest, summary["best"][fastest], f"{summary['vs_st_torch_fp32']:.2f}x",
                             f"{summary['vs_st_fastest']:.2f}x ({summary['st_fastest']})",
                             f"{dev[fastest] - dev['simcse torch fp32']:+.2f}", data))  # fmt: skip
    if EARLIER_ENCODE.is_file():
        data = json.loads(EARLIER_ENCODE.read_text(encoding="utf-8"))
        best, theirs = (
            max((r for r in data["rows"] if r["row"].startswith(side)), key=lambda r: speed(r["sentences/s"]))
            for side in ("simcse", "ST")
        )
        vs_fastest = best[ST_FASTEST].strip("*") + f" ({theirs['row'].split(' (')[0]})"
        rows.append(_cpu_row(data["provenance"]["cpu"], best["row"], speed(best["sentences/s"]),
                             best["vs ST torch fp32"].strip("*"), vs_fastest, best["vs fp32"], data["provenance"]))  # fmt: skip
    if not rows:
        return []
    return [
        "## Encoding speed by CPU class",
        "",
        "`benchmarks/encode_speed.py` on each kind of CPU the project's machines have had: our fastest backend",
        "that passes the quality guard against sentence-transformers' torch fp32 and its fastest available",
        "backend, measured side by side in one run (all-MiniLM-L6-v2, batch 64; each run's sentences are in its",
        "table below).",
        "",
        *table(rows),
        "",
    ]


def benchmark_sections() -> list[str]:
    """Each ``benchmarks/results/*.md`` (a benchmark's table, stamped by ``benchmarks/bench_common.py``)."""
    lines = []
    for path in sorted(BENCHMARK_RESULTS.glob("*.md")):
        text = path.read_text(encoding="utf-8").splitlines()
        lines += ["### " + text[0].removeprefix("# "), "", *text[1:], ""]
    return lines


SAMPLE = re.compile(r"^<!-- sample: ([\w-]+) -->$", re.M)


GENERATED = re.compile(r"^<!-- generated: ([\w-]+) -->$", re.M)


def int8_schemes() -> list[str]:
    """The int8 schemes of ``simcse export --quantize int8`` and the one each CPU class gets by default."""
    from simcse.core.hardware import INT8_TARGETS
    from simcse.modeling.graph_runners import DEFAULT_SCHEMES, INT8_SCHEMES, PORTABLE_SCHEMES

    rows = []
    for backend, schemes in INT8_SCHEMES.items():
        for scheme, what in schemes.items():
            default_for = [t for t in INT8_TARGETS if DEFAULT_SCHEMES[backend][t] == scheme]
            rows.append({
                "--to": backend,
                "--int8-scheme": f"`{scheme}`",
                "what it is": what,
                "holds on": "every CPU class" if scheme in PORTABLE_SCHEMES else "VNNI or AMX CPUs",
                "default for --target-cpu": ", ".join(f"`{t}`" for t in default_for) or "-",
            })  # fmt: skip
    return table(rows)


def with_samples(page: Path) -> str | None:
    """A page with each ``<!-- sample: GROUP -->`` line replaced by the stamped outputs of that group's
    results files and each ``<!-- generated: NAME -->`` by the table the code gives (:data:`GENERATORS`);
    None for a page without any."""
    original = page.read_text(encoding="utf-8")
    text = GENERATED.sub(lambda m: "\n".join(GENERATORS[m.group(1)]()), original)

    def sample(match: re.Match) -> str:
        paths = [
            p
            for p in sorted(RESULTS.glob(f"{match.group(1)}--*.json"))
            if "text" in json.loads(p.read_text())
        ]
        if not paths:
            raise SystemExit(
                f"{page}: <!-- sample: {match.group(1)} --> but no docs/results/{match.group(1)}--*.json"
            )
        parts = []
        for path in paths:
            data = json.loads(path.read_text(encoding="utf-8"))
            parts += ["Sample: " + stamp_lines(data["provenance"])[0], "", "```text", data["text"], "```", ""]
        return "\n".join(parts)

    text = SAMPLE.sub(sample, text)
    return None if text == original else text


def pages() -> dict[str, list[str]]:
    from simcse.cli import build_parser

    return {
        "reference/cli.md": [
            "# Command line",
            "",
            "Every command and option of `simcse`, read from its argparse parsers at build time.",
            "",
            *cli_page(build_parser()),
        ],
        "reference/config.md": config_page(),
        "reference/recipes.md": recipes_page(),
        "results/index.md": results_page(),
    }


GENERATORS: dict[str, Callable[[], list[str]]] = {"int8-schemes": int8_schemes}


def write_all(open_file: Callable[[str], typing.TextIO]) -> None:
    for name, lines in pages().items():
        with open_file(name) as f:
            f.write("\n".join(lines) + "\n")
    for page in sorted(DOCS.rglob("*.md")):
        text = with_samples(page)
        if text is not None:
            with open_file(page.relative_to(DOCS).as_posix()) as f:
                f.write(text)


if __name__ == "__main__" and len(sys.argv) == 2:
    root = Path(sys.argv[1])

    def _open(name: str) -> typing.TextIO:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        return open(root / name, "w", encoding="utf-8")

    write_all(_open)
elif __name__ == "<run_path>":  # mkdocs-gen-files runs this file with runpy.run_path during the build
    import mkdocs_gen_files

    write_all(lambda name: mkdocs_gen_files.open(name, "w"))
