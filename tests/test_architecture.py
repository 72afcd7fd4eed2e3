"""The package's layers, checked from its source: no import cycle, no import from a lower layer into a
higher one, and no torch behind ``simcse --help``. See ARCHITECTURE.md.

Every module must belong to a layer: a new top-level module fails here until it is placed in LAYERS.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "simcse"

# module (or package) -> layer; the longest matching prefix wins
LAYERS = {
    "simcse.version": "base",
    "simcse.errors": "base",
    "simcse.files": "base",
    "simcse.config": "base",
    "simcse.safe_yaml": "base",
    "simcse.runtime": "base",
    "simcse.precision_options": "base",
    "simcse.hardware": "base",
    "simcse.download": "base",
    "simcse.hub": "base",
    "simcse.augment": "base",
    "simcse.prompts": "base",
    "simcse.nli_files": "base",
    "simcse.tracker_packages": "base",
    "simcse.sentence_files": "base",
    "simcse.modeling": "modeling",
    "simcse.baselines": "modeling",
    "simcse.backends": "modeling",  # running an exported graph
    "simcse.backends.export": "use",  # writing one, checked on STS-B dev
    "simcse.backends.guard": "use",
    "simcse.evaluation": "evaluation",
    "simcse.training": "training",
    "simcse.api": "use",
    "simcse.index": "use",
    "simcse.index_dir": "use",
    "simcse.corpus": "use",
    "simcse.corpus_files": "use",
    "simcse.export": "use",
    "simcse.serve": "serve",
    "simcse.experiments": "experiments",
    "simcse.analysis": "experiments",
    "simcse.cli": "cli",
}
# what each layer may import (the layer itself included); imports go downward only
MAY_IMPORT = {
    "base": {"base"},
    "modeling": {"base", "modeling"},
    "evaluation": {"base", "modeling", "evaluation"},
    "training": {"base", "modeling", "evaluation", "training"},
    "use": {"base", "modeling", "evaluation", "use"},
    "serve": {"base", "modeling", "evaluation", "use", "serve"},
    "experiments": {"base", "modeling", "evaluation", "training", "experiments"},
    "cli": {"base", "modeling", "evaluation", "training", "use", "serve", "experiments", "cli"},
}
FACADE = "simcse"  # simcse/__init__.py: the public names, above every layer; nothing inside imports it


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str | None:
    matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    return LAYERS[max(matches, key=len)] if matches else None


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


def test_every_module_has_a_layer():
    unplaced = [m for m in MODULES if m != FACADE and layer_of(m) is None]
    assert not unplaced, f"place these modules in a layer (tests/test_architecture.py LAYERS): {unplaced}"


def test_no_module_imports_the_facade():
    offenders = [m for m, deps in GRAPH.items() if m != FACADE and FACADE in deps]
    assert not offenders, f"import from the defining module, not from simcse/__init__.py: {offenders}"


def test_imports_go_downward_only():
    upward = []
    for module, deps in GRAPH.items():
        if module == FACADE:
            continue
        allowed = MAY_IMPORT[layer_of(module)]
        upward += [f"{module} ({layer_of(module)}) -> {dep} ({layer_of(dep)})" for dep in sorted(deps)
                   if layer_of(dep) not in allowed]  # fmt: skip
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
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in GRAPH.items() if m != FACADE}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_finds_cycles_and_upward_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("simcse.training.loop") == "training" and layer_of("simcse.serve.app") == "serve"
    assert "training" not in MAY_IMPORT["modeling"] and "training" not in MAY_IMPORT["evaluation"]
    assert "use" not in MAY_IMPORT["training"] and "cli" not in MAY_IMPORT["training"]
    assert "simcse.modeling.model_dir" in GRAPH["simcse.modeling.encoder"]  # from-imports of modules resolve


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"], ["--version"]])
def test_help_imports_no_torch(argv):
    code = ("import sys\nfrom simcse.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'numpy'})\n"
            "assert not heavy, heavy\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_every_package_directory_has_an_init():
    # setuptools' find_packages skips a folder without __init__.py: its modules would be missing from a wheel
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    missing = sorted(str(f.relative_to(SRC)) for f in folders if not (f / "__init__.py").exists())
    assert not missing, f"add __init__.py to {missing}"
