"""Every route of the HTTP service is documented: docs/reference/http.md has a heading naming its path."""

from __future__ import annotations

import ast
import re

from tests.docs.docs_blocks import ROOT

APP = ROOT / "src" / "simcse" / "serve" / "app.py"
PAGE = ROOT / "docs" / "reference" / "http.md"
ROUTE_METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "api_route", "websocket"}


def routes() -> list[tuple[str, str]]:
    """(method, path) of every ``@app.METHOD("PATH")`` decorator in serve/app.py."""
    found = []
    for node in ast.walk(ast.parse(APP.read_text(encoding="utf-8"))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr in ROUTE_METHODS
                and isinstance(decorator.func.value, ast.Name)
                and decorator.func.value.id == "app"
                and decorator.args
                and isinstance(decorator.args[0], ast.Constant)
                and isinstance(decorator.args[0].value, str)
            ):
                found.append((decorator.func.attr.upper(), decorator.args[0].value))
    return found


def headings() -> list[str]:
    return [line for line in PAGE.read_text(encoding="utf-8").splitlines() if re.match(r"#{1,6} ", line)]


def test_the_routes_are_found():
    paths = {path for _, path in routes()}
    assert {"/v1/embeddings", "/similarity", "/search", "/health", "/"} <= paths, paths


def test_every_route_has_a_heading():
    titles = headings()
    missing = [
        f"{method} {path}"
        for method, path in routes()
        if not any(re.search(rf"`?{re.escape(method)}\s+{re.escape(path)}`?(?=[\s`]|$)", t) for t in titles)
    ]
    assert not missing, f"docs/reference/http.md has no heading for: {', '.join(missing)}"
