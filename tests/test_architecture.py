"""The package's layers, checked from its source: every module sits in a layer folder, imports go downward
only, there is no import cycle, and no torch behind ``simcse --help``. The layers are the folders of
``src/simcse``; ARCHITECTURE.md shows them as this file generates them.

Run ``python tests/test_architecture.py`` to rewrite ARCHITECTURE.md's generated part after adding a module.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "simcse"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"

# layer folder -> what it holds, and the layers directly below it (it may import those and everything below
# them; a layer always imports itself)
LAYERS = {
    "core": ("errors, files, YAML, the process and its precision, the CPU", ()),
    "data": ("reading, fetching and deriving training and evaluation data", ("core",)),
    "modeling": ("the encoder, its poolers, model directories, exported graphs", ("core",)),
    "baselines": ("training-free encoders from the related work", ("data", "modeling")),
    "evaluation": ("STS, transfer, clustering, geometry; the task suite", ("baselines",)),
    "training": ("the options, the loop and its pieces, the family's methods", ("evaluation",)),
    "use": ("the SimCSE API, indexes, corpus encoding, export", ("evaluation",)),
    "serve": ("the HTTP service", ("use",)),
    "experiments": ("grids of training runs, their tables and plots; simcse analyze", ("training",)),
    "cli": ("the simcse command (argument parsing only)", ("serve", "experiments")),
}
# the modules outside every layer folder, and why they are there; nothing inside a layer imports them
LOOSE = {
    "simcse": "the public facade (`from simcse import SimCSE, Encoder, TrainConfig, train, evaluate`)",
    "simcse.api": "deprecated: the old path of `simcse.use.api`",
    "simcse.config": "deprecated: the old path of `simcse.training.config`",
    "simcse.index": "deprecated: the old path of `simcse.use.index`",
}
MAX_LOOSE = 4  # besides __init__.py


def closure(layer: str) -> set[str]:
    seen, todo = {layer}, list(LAYERS[layer][1])
    while todo:
        below = todo.pop()
        if below not in seen:
            seen.add(below)
            todo += LAYERS[below][1]
    return seen


MAY_IMPORT = {layer: closure(layer) for layer in LAYERS}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str | None:
    """The layer folder a module sits in (``simcse.training.methods.diffcse`` -> training), else None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def imports_of(module: str) -> set[str]:
    """Every simcse module that ``module`` imports, at the top or inside a function (a lazy import is still
    a dependency). ``from simcse.x import y`` counts as importing ``simcse.x.y`` when that is a module."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "simcse"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "simcse":
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
    return {m for m in found if m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_is_in_a_layer_folder():
    unplaced = [m for m in MODULES if m not in LOOSE and layer_of(m) is None]
    assert not unplaced, f"put these modules in a layer folder ({', '.join(LAYERS)}): {unplaced}"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= set(LAYERS), f"folders that are not layers: {sorted(folders - set(LAYERS))}"
    assert len(LOOSE) - 1 <= MAX_LOOSE
    assert {m for m in MODULES if layer_of(m) is None} == set(LOOSE), "LOOSE names a module that is gone"


def test_nothing_inside_imports_a_loose_module():
    offenders = [f"{m} -> {d}" for m, deps in GRAPH.items() if m not in LOOSE for d in deps if d in LOOSE]
    assert not offenders, f"import from the defining module, not from the facade or an old path: {offenders}"


def test_imports_go_downward_only():
    upward = []
    for module, deps in GRAPH.items():
        if module in LOOSE:
            continue
        allowed = MAY_IMPORT[layer_of(module)]
        upward += [f"{module} ({layer_of(module)}) -> {dep} ({layer_of(dep)})" for dep in sorted(deps)
                   if dep not in LOOSE and layer_of(dep) not in allowed]  # fmt: skip
    assert not upward, "imports from a lower layer into a higher one:\n" + "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    colour, stack = dict.fromkeys(graph, 0), []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in colour:
                continue
            if colour[dep] == 1:
                return stack[stack.index(dep) :] + [dep]
            if colour[dep] == 0 and (cycle := visit(dep)):
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for node in graph:
        if colour[node] == 0 and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    # a package's __init__ re-exporting its own submodule is not a cycle of design: ignore package -> child
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in GRAPH.items() if m not in LOOSE}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_finds_cycles_and_upward_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("simcse.training.loop") == "training" and layer_of("simcse.serve.app") == "serve"
    assert layer_of("simcse.api") is None and layer_of("simcse.core.errors") == "core"
    assert "training" not in MAY_IMPORT["modeling"] and "training" not in MAY_IMPORT["evaluation"]
    assert "use" not in MAY_IMPORT["training"] and "cli" not in MAY_IMPORT["training"]
    assert "training" not in MAY_IMPORT["use"] and MAY_IMPORT["core"] == {"core"}
    assert "simcse.modeling.model_dir" in GRAPH["simcse.modeling.encoder"]  # from-imports of modules resolve


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"], ["--version"]])
def test_help_imports_no_torch(argv):
    code = ("import sys\nfrom simcse.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'numpy'})\n"
            "assert not heavy, heavy\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 450, 100  # past these a module or a function wants splitting


def test_modules_and_functions_stay_short():
    long_modules = [f"{m} ({n})" for m, p in MODULES.items()
                    if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]  # fmt: skip
    long_functions = [
        f"{m}: {node.name} ({node.end_lineno - node.lineno + 1})"
        for m, p in MODULES.items()
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"


def test_every_package_directory_has_an_init():
    # setuptools' find_packages skips a folder without __init__.py: its modules would be missing from a wheel
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    missing = sorted(str(f.relative_to(SRC)) for f in folders if not (f / "__init__.py").exists())
    assert not missing, f"add __init__.py to {missing}"


# ------------------------------------------------------------------ ARCHITECTURE.md's generated part
BEGIN, END = "<!-- layout: generated by tests/test_architecture.py, do not edit -->", "<!-- end of layout -->"


def summary(path: Path) -> str:
    """A module's docstring up to its first full stop (its first paragraph when it has none)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    match = re.match(r"(.+?[.!?])(?=\s+[A-Z`(]|$)", first)  # a full stop before a capital, or the end
    return (match.group(1) if match else first).rstrip(".") + "."


def layout() -> str:
    """The layers, what each may import, and every module with its docstring's first sentence."""
    lines = [BEGIN, "", "| layer | holds | imports (besides itself) |", "|---|---|---|"]
    for layer, (holds, _) in LAYERS.items():
        below = ", ".join(sorted(MAY_IMPORT[layer] - {layer}, key=list(LAYERS).index)) or "nothing"
        lines.append(f"| `{layer}/` | {holds} | {below} |")
    lines += ["", "Outside the layers, at most four modules:", ""]
    lines += [
        f"- `{m.replace('.', '/')}{'/__init__' if m == 'simcse' else ''}.py`: {why}"
        for m, why in LOOSE.items()
    ]
    for layer in LAYERS:
        lines += ["", f"### `{layer}/`", "", "| module | what it is |", "|---|---|"]
        for module, path in MODULES.items():
            if layer_of(module) == layer:
                shown = str(path.relative_to(PACKAGE))
                lines.append(f"| `{shown}` | {summary(path).replace('|', '/')} |")
    return "\n".join([*lines, "", END])


def test_every_module_says_what_it_is():
    missing = [
        m for m, p in MODULES.items() if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))
    ]
    assert not missing, (
        f"give these modules a docstring (ARCHITECTURE.md shows its first sentence): {missing}"
    )


def test_architecture_md_shows_this_layout():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"ARCHITECTURE.md lacks the markers {BEGIN!r} ... {END!r}"
    current = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert current == layout(), "ARCHITECTURE.md's layout is stale: run python tests/test_architecture.py"


if __name__ == "__main__":
    text = ARCHITECTURE.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    ARCHITECTURE.write_text(text[:start] + layout() + text[end:], encoding="utf-8")
    print(f"wrote the layout into {ARCHITECTURE}")
