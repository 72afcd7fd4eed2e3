"""The recipes that ship with the package (the quickstart, the paper's, the follow-up methods'): YAML files
of training options, addressed by name wherever a config file is accepted (``simcse train quickstart``);
``configs/`` in a checkout holds links to the same files."""

from __future__ import annotations

from pathlib import Path

from simcse.core.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


def builtin_recipes() -> list[str]:
    """The names of the recipes that ship with the package, sorted."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(value: str | Path) -> Path:
    """A config file as given (a path that exists, or one ending in .yaml / .yml), else the built-in
    recipe of that name; a ConfigError lists the recipes when it is neither."""
    path = Path(value).expanduser()
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    builtin = RECIPES_DIR / f"{value}.yaml"
    if builtin.is_file():
        return builtin
    raise ConfigError(
        f"{value}: no such config file or recipe; recipes: {', '.join(builtin_recipes())} "
        "(simcse recipes says what each is)"
    )


def summary(path: Path) -> str:
    """A recipe's first comment line: what it trains, in one line."""
    first = path.read_text(encoding="utf-8").splitlines()[:1]
    return first[0].lstrip("#").strip() if first and first[0].startswith("#") else ""
