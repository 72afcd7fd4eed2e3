"""Docstrings, checked from the source with ``ast`` (no import of torch, so it runs in a second): every public
module, class, function and method has one, and the documented API (what ``simcse`` exports, the SimCSE
API, ``Encoder.encode``, ``load_encoder``, ``train``, ``evaluate``) names each of its parameters in a Google
style ``Args:`` section, which mkdocstrings renders with ``docstring_style: google``.

Public: a name not starting with ``_`` in a module whose path has no part starting with ``_`` (``__init__.py``
excepted), and the methods not starting with ``_`` of public classes; dunder methods, property setters and
deleters, and ``@overload`` stubs are exempt.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "simcse"

# (module, class or None, function or None): the documented API besides what simcse.__all__ exports; a class
# with no function stands for its constructor and every public method, its in-package bases' included
DOCUMENTED = [
    ("simcse.use.api", "SimCSE", None),
    ("simcse.modeling.encoder", "Encoder", "encode"),
    ("simcse.modeling.loading", None, "load_encoder"),
    ("simcse.training.loop", None, "train"),
    ("simcse.evaluation.suite", None, "evaluate"),
]
SECTION = re.compile(r"^(\s*)Args:\s*$")
ENTRY = re.compile(r"^\s*\**(\w+)\s*(\([^)]*\))?\s*:")

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_public_path(path: Path) -> bool:
    parts = path.relative_to(PACKAGE).parts
    return not any(p.startswith("_") for p in parts[:-1]) and (
        parts[-1] == "__init__.py" or not parts[-1].startswith("_")
    )


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in MODULES.items()}


def decorator_names(node: FunctionNode | ast.ClassDef) -> list[str]:
    """``property``, ``x.setter``, ``overload``, ``typing.overload``... as written (calls: their callee)."""
    names = []
    for d in node.decorator_list:
        d = d.func if isinstance(d, ast.Call) else d
        names.append(ast.unparse(d))
    return names


def exempt_method(node: FunctionNode) -> bool:
    decorators = decorator_names(node)
    return (
        (node.name.startswith("__") and node.name.endswith("__"))
        or any(d.endswith((".setter", ".deleter")) for d in decorators)
        or any(d.split(".")[-1] == "overload" for d in decorators)
    )


def top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """A module's statements, those inside top-level ``if`` / ``try`` blocks included."""
    out = []
    for stmt in body:
        if isinstance(stmt, ast.If):
            out += top_level(stmt.body) + top_level(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            out += top_level(stmt.body) + top_level(stmt.orelse) + top_level(stmt.finalbody)
            for handler in stmt.handlers:
                out += top_level(handler.body)
        else:
            out.append(stmt)
    return out


def public_definitions(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """(qualified name, node) of every public class, function and method of a module."""
    found = []

    def visit_class(cls: ast.ClassDef, prefix: str) -> None:
        found.append((prefix + cls.name, cls))
        for node in cls.body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit_class(node, f"{prefix}{cls.name}.")
            elif isinstance(node, FunctionNode) and not node.name.startswith("_") and not exempt_method(node):
                found.append((f"{prefix}{cls.name}.{node.name}", node))

    for node in top_level(tree.body):
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            visit_class(node, "")
        elif (
            isinstance(node, FunctionNode)
            and not node.name.startswith("_")
            and not any(d.split(".")[-1] == "overload" for d in decorator_names(node))
        ):
            found.append((node.name, node))
    return found


def missing_docstrings() -> tuple[list[str], int]:
    """file:line name of every public module, class, function and method without a docstring, and how many
    were checked."""
    missing, checked = [], 0
    for module, path in MODULES.items():
        if not is_public_path(path):
            continue
        where = path.relative_to(ROOT)
        tree = TREES[module]
        checked += 1
        if not ast.get_docstring(tree):
            missing.append(f"{where}:1 (module {module})")
        for name, node in public_definitions(tree):
            checked += 1
            if not ast.get_docstring(node):
                missing.append(f"{where}:{node.lineno} {name}")
    return missing, checked


# ------------------------------------------------------------------ the documented API
@dataclass
class Target:
    module: str
    node: FunctionNode
    owner: ast.ClassDef | None = None  # the class whose method it is
    init_doc: str = ""  # a constructor's parameters may be documented in its class's docstring instead

    @property
    def label(self) -> str:
        name = f"{self.owner.name}.{self.node.name}" if self.owner else self.node.name
        return f"{MODULES[self.module].relative_to(ROOT)}:{self.node.lineno} {self.module}.{name}"


def defined(module: str, name: str) -> tuple[str, ast.AST] | None:
    """Where ``module.name`` is defined: (module, class or function node), following from-imports and
    submodules; None for anything else (a constant)."""
    if f"{module}.{name}" in MODULES and name not in {
        n.name for n in TREES[module].body if isinstance(n, (ast.ClassDef, *FunctionNode.__args__))
    }:
        return None  # a submodule
    for node in top_level(TREES[module].body):
        if isinstance(node, (ast.ClassDef, *FunctionNode.__args__)) and node.name == name:
            return module, node
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simcse"):
            for alias in node.names:
                if (alias.asname or alias.name) == name and node.module in MODULES:
                    return defined(node.module, alias.name)
    return None


def exported() -> list[tuple[str, ast.AST]]:
    """What ``simcse.__all__`` names, resolved through the facade's lazy ``_PUBLIC`` table or its imports."""
    tree = TREES["simcse"]
    names, lazy = [], {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == "__all__":
                names = ast.literal_eval(node.value)
            elif node.targets[0].id == "_PUBLIC":
                lazy = ast.literal_eval(node.value)
    assert names, "simcse/__init__.py has no __all__"
    out = []
    for name in names:
        found = defined(*lazy[name]) if name in lazy else defined("simcse", name)
        if found is not None:
            out.append(found)
    return out


def class_methods(module: str, cls: ast.ClassDef) -> list[tuple[str, ast.ClassDef, FunctionNode]]:
    """A class's public methods, then those it inherits from its bases inside the package, first one wins."""
    seen, out = set(), []
    for owner_module, owner in [(module, cls), *package_bases(module, cls)]:
        for node in owner.body:
            if isinstance(node, FunctionNode) and node.name not in seen:
                seen.add(node.name)
                constructor = node.name == "__init__" and owner is cls
                if constructor or (not node.name.startswith("_") and not exempt_method(node)):
                    out.append((owner_module, owner, node))
    return out


def package_bases(module: str, cls: ast.ClassDef) -> list[tuple[str, ast.ClassDef]]:
    """A class's bases defined in the package, depth first, left to right (others cannot be read here)."""
    out = []
    for base in cls.bases:
        if isinstance(base, ast.Name) and (found := defined(module, base.id)):
            base_module, base_node = found
            if isinstance(base_node, ast.ClassDef):
                out += [(base_module, base_node), *package_bases(base_module, base_node)]
    return out


def documented_api() -> list[Target]:
    targets = []

    def add(module: str, node: ast.AST, method: str | None = None) -> None:
        if isinstance(node, FunctionNode):
            targets.append(Target(module, node))
            return
        for owner_module, owner, fn in class_methods(module, node):
            if method is None or fn.name == method:
                init_doc = ast.get_docstring(owner) or "" if fn.name == "__init__" else ""
                targets.append(Target(owner_module, fn, owner, init_doc))

    for module, node in exported():
        add(module, node)
    for module, cls, function in DOCUMENTED:
        found = defined(module, cls or function)
        assert found is not None, f"DOCUMENTED names {module}.{cls or function}, which is not there"
        add(*found, function if cls else None)
    unique = {(t.module, t.node.lineno): t for t in targets}
    return list(unique.values())


def args_section(doc: str) -> list[str]:
    """The parameter names of a Google style docstring's ``Args:`` section, in order."""
    names, indent, entry_indent = [], None, None
    for line in doc.splitlines():
        if indent is None:
            if match := SECTION.match(line):
                indent = len(match.group(1))
            continue
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth <= indent:
            break
        entry_indent = depth if entry_indent is None else entry_indent
        if depth == entry_indent and (match := ENTRY.match(line)):
            names.append(match.group(1))
    return names


def parameters(node: FunctionNode) -> list[str]:
    args = node.args
    names = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
    is_method = names and names[0] in ("self", "cls")
    return names[1:] if is_method else names


def undocumented_parameters() -> list[str]:
    problems = []
    for target in documented_api():
        doc = ast.get_docstring(target.node) or ""
        documented = set(args_section(doc)) | set(args_section(target.init_doc))
        missing = [p for p in parameters(target.node) if p not in documented]
        args = target.node.args
        star = {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        stale = [p for p in args_section(doc) if p not in parameters(target.node) and p not in star]
        if missing:
            problems.append(f"{target.label}: Args: lacks {', '.join(missing)}")
        if stale:
            problems.append(f"{target.label}: Args: names {', '.join(stale)}, which it does not take")
    return problems


# ------------------------------------------------------------------ the tests
def test_every_public_definition_has_a_docstring():
    missing, checked = missing_docstrings()
    assert checked > 300, f"only {checked} public definitions found: is the walk broken?"
    assert not missing, f"{len(missing)} of {checked} public definitions have no docstring:\n" + "\n".join(
        missing
    )


def test_the_documented_api_names_every_parameter():
    targets = documented_api()
    names = {f"{t.owner.name}.{t.node.name}" if t.owner else t.node.name for t in targets}
    expected = {"SimCSE.__init__", "SimCSE.encode", "SimCSE.search", "SimCSE.build_index", "Encoder.encode"}
    expected |= {"train", "evaluate", "load_encoder", "TrainConfig.from_dict"}
    # inherited methods are reported under the class that defines them
    names |= {f"SimCSE.{n.split('.')[-1]}" for n in names if n.startswith("IndexMethods.")}
    names |= {f"Encoder.{n.split('.')[-1]}" for n in names if n.startswith("TokenizedEncoder.")}
    assert expected <= names, f"the documented API misses {sorted(expected - names)}"
    problems = undocumented_parameters()
    assert not problems, "document these parameters in a Google style Args: section:\n" + "\n".join(problems)


def test_the_args_parser_reads_google_style():
    doc = (
        "Summary.\n\nArgs:\n    first: one line.\n    second (int): wraps\n        onto: a second line.\n"
        "    *args: rest.\n    **kwargs: more.\n\nReturns:\n    value: not an argument."
    )
    assert args_section(doc) == ["first", "second", "args", "kwargs"]
    assert args_section("Summary.\n\nReturns:\n    x: y.") == []
