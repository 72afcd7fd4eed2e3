"""A grid of training runs as data: a base config, the settings to compare (named overrides, or the
product of axes), the seeds; every cell is a normal ``simcse train`` run with its own directory.

A grid file (YAML)::

    name: dropout
    title: "Table 3: dropout rate"
    metric: stsb_spearman            # the column the table, the plot and the paper comparison use
    seeds: [1, 2, 3]
    base: {from: unsup-wiki, final_eval: sts}   # TrainConfig keys; ``from``: a shared base (grids/bases/)
    settings:                        # one table row each: a name and its overrides
      - {name: "p = 0.0", dropout: 0.0}
      - {name: "p = 0.1", dropout: 0.1}
    axes: {learning_rate: [1e-5, 3e-5]}   # optional: every setting x every combination of these
    paper: {"p = 0.0": 71.1, "p = 0.1": 82.5}   # optional: the paper's figure per setting
    paper_source: "Gao et al. 2021, Table 3 (STS-B dev, BERT-base, full budget)"

Every cell's config is built and validated before any cell runs; all problems are reported together.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simcse.core.errors import ConfigError, SimCSEError
from simcse.core.safe_yaml import read_yaml
from simcse.training.config import TrainConfig

GRIDS_DIR = Path(__file__).with_name("grids")
BASES_DIR = GRIDS_DIR / "bases"  # the base configs several grids share (``base: {from: NAME, ...}``)
GRID_KEYS = {
    "name",
    "title",
    "description",
    "metric",
    "seeds",
    "base",
    "settings",
    "axes",
    "paper",
    "paper_source",
    "budget",
}
METRICS = ("stsb_spearman", "sickr_spearman", "avg_sts", "dev_spearman", "test_avg_sts", "test_avg_transfer")
# set by the runner for every cell, so a grid cannot set them
RUNNER_KEYS = ("output_dir", "overwrite_output_dir", "seed")


@dataclass(frozen=True)
class Setting:
    """One setting of a grid: its name and the config keys it overrides."""

    name: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Cell:
    """One run: a setting at a seed, with its full config and its directory."""

    setting: Setting
    seed: int
    config: TrainConfig
    out: Path

    @property
    def label(self) -> str:
        """``SETTING seed N``, as progress lines and errors name the cell."""
        return f"{self.setting.name} seed {self.seed}"


@dataclass
class Grid:
    """A grid as read from its YAML: the base config, the settings, the seeds, the metric its table, plot and
    paper comparison use, and the paper's values to compare with."""

    name: str
    title: str
    base: dict[str, Any]
    settings: list[Setting]
    seeds: list[int]
    metric: str = "stsb_spearman"
    description: str = ""
    paper: dict[str, float] = field(default_factory=dict)
    paper_source: str = ""
    source: str = ""  # the file it was read from


def builtin_grids() -> list[str]:
    """The names of the grids that ship with the package (``simcse experiment NAME``)."""
    return sorted(p.stem for p in GRIDS_DIR.glob("*.yaml"))


def grid_path(name_or_path: str | Path) -> Path:
    """A built-in grid's file (``dropout``) or a user's YAML file."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SimCSEError(f"{path}: no such grid file")
        return path
    builtin = GRIDS_DIR / f"{name_or_path}.yaml"
    if not builtin.is_file():
        raise SimCSEError(
            f"unknown experiment {str(name_or_path)!r}; built-in grids: {', '.join(builtin_grids())} "
            "(or give a grid .yaml file)"
        )
    return builtin


def slug(name: str) -> str:
    """A directory name for a setting: ``p = 0.1`` -> ``p-0.1``."""
    text = re.sub(r"[^A-Za-z0-9.+_-]+", "-", name).strip("-.")
    return text or "setting"


def _settings(raw: dict[str, Any], where: str, problems: list[str]) -> list[Setting]:
    listed = raw.get("settings") or [{"name": "base"}]
    if not isinstance(listed, list):
        problems.append(f"{where}: settings must be a list of mappings with a name")
        return []
    settings = []
    for i, entry in enumerate(listed):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), (str, int, float)):
            problems.append(f"{where}: settings[{i}] must be a mapping with a name")
            continue
        overrides = {k: v for k, v in entry.items() if k != "name"}
        settings.append(Setting(str(entry["name"]), overrides))
    axes = raw.get("axes") or {}
    if not isinstance(axes, dict) or not all(isinstance(v, list) and v for v in axes.values()):
        problems.append(f"{where}: axes must map config keys to non-empty lists of values")
        return settings
    if not axes:
        return settings
    product = []
    for setting in settings:
        for values in itertools.product(*axes.values()):
            chosen = dict(zip(axes, values))
            parts = [] if setting.name == "base" and len(settings) == 1 else [setting.name]
            parts += [f"{k}={v}" for k, v in chosen.items()]
            product.append(Setting(", ".join(parts), {**setting.overrides, **chosen}))
    return product


def _base(value: Any, where: str, problems: list[str]) -> dict[str, Any]:
    """A grid's base config: its keys, on top of the shared base that ``from`` names."""
    if not isinstance(value, dict):
        problems.append(f"{where}: base must be a mapping of config keys")
        return {}
    if "from" not in value:
        return value
    name = value["from"]
    shared = BASES_DIR / f"{name}.yaml"
    if not isinstance(name, str) or not shared.is_file():
        known = ", ".join(sorted(p.stem for p in BASES_DIR.glob("*.yaml")))
        problems.append(f"{where}: base from {name!r}: no such shared base; known: {known}")
        return {}
    return {**read_yaml(shared), **{k: v for k, v in value.items() if k != "from"}}


def load_grid(name_or_path: str | Path) -> Grid:
    """Read and check a grid file (its keys and shapes; the configs are checked by :func:`cells`)."""
    path = grid_path(name_or_path)
    raw = read_yaml(path)
    where = str(path)
    problems: list[str] = []
    unknown = sorted(set(raw) - GRID_KEYS)
    if unknown:
        problems.append(
            f"{where}: unknown grid key(s) {', '.join(unknown)}; known: {', '.join(sorted(GRID_KEYS))}"
        )
    base = _base(raw.get("base") or {}, where, problems)
    seeds = raw.get("seeds", [1, 2, 3])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
        problems.append(f"{where}: seeds must be a non-empty list of integers >= 0")
        seeds = [1]
    metric = raw.get("metric", "stsb_spearman")
    if metric not in METRICS:
        problems.append(f"{where}: metric must be one of {', '.join(METRICS)}, got {metric!r}")
    settings = _settings(raw, where, problems)
    names = [s.name for s in settings]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"{where}: setting names must be unique: {', '.join(duplicates)}")
    slugs = [slug(n) for n in names]
    if len(set(slugs)) != len(slugs) and not duplicates:
        problems.append(f"{where}: setting names must differ in more than punctuation: {', '.join(names)}")
    paper = raw.get("paper") or {}
    if not isinstance(paper, dict) or not all(isinstance(v, (int, float)) for v in paper.values()):
        problems.append(f"{where}: paper must map setting names to numbers")
        paper = {}
    elif set(map(str, paper)) - set(names):
        problems.append(
            f"{where}: paper names settings the grid lacks: {', '.join(sorted(set(map(str, paper)) - set(names)))}"
        )
    if problems:
        raise ConfigError("; ".join(problems))
    return Grid(
        name=str(raw.get("name") or path.stem),
        title=str(raw.get("title") or raw.get("name") or path.stem),
        base=base,
        settings=settings,
        seeds=list(seeds),
        metric=metric,
        description=str(raw.get("description") or ""),
        paper={str(k): float(v) for k, v in paper.items()},
        paper_source=str(raw.get("paper_source") or ""),
        source=where,
    )


OVERRIDES = "the overrides (--set, --max_steps)"


def cells(
    grid: Grid,
    out: str | Path,
    *,
    base: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
    overrides: dict[str, Any] | None = None,
) -> list[Cell]:
    """Every run of the grid, validated. ``base``: a user's config on top of the grid's base (``--base``);
    ``overrides``: applied last to every cell (``--max_steps`` and the like)."""
    out = Path(out)
    problems = []
    failed: dict[str, list[Setting]] = {}  # one message per problem, naming the settings it applies to
    result = []
    problems += [
        f"{OVERRIDES}: {key} is set by the experiment runner"
        for key in RUNNER_KEYS
        if key in (overrides or {})
    ]
    for setting in grid.settings:
        for key in RUNNER_KEYS:
            if key in setting.overrides:
                problems.append(f"setting {setting.name!r}: {key} is set by the experiment runner")
        for seed in seeds or grid.seeds:
            cell_out = out / slug(setting.name) / f"seed{seed}"
            try:
                config = _config(grid, setting, base, overrides, output_dir=str(cell_out), seed=seed)
            except ConfigError as e:
                failed.setdefault(str(e), []).append(setting)
                break  # one message per setting: the seed does not change what is wrong
            result.append(Cell(setting, seed, config, cell_out))
    for message, settings in failed.items():
        every = len(settings) == len(grid.settings) > 1
        if every and overrides and _valid_without(grid, base, overrides):
            problems.append(f"{OVERRIDES} (applied to every setting of {grid.source}): {message}")
        elif every:
            problems.append(f"{grid.source}, every setting: {message}")
        else:
            names = ", ".join(repr(s.name) for s in settings)
            problems.append(f"{grid.source} setting{'s' if len(settings) > 1 else ''} {names}: {message}")
    if problems:
        raise ConfigError("; ".join(dict.fromkeys(problems)))
    return result


def with_its_sample(values: dict[str, Any]) -> dict[str, Any]:
    """A layer that names its training file also says how much of it to use: the grid base's
    ``max_train_samples`` (its CPU-sized sample) belongs to the grid base's file, so a ``--base`` recipe that
    swaps the file without a sample size trains on all of it (``--set max_train_samples=N`` still caps it)."""
    if "train_file" in values and "max_train_samples" not in values:
        return {**values, "max_train_samples": 0}
    return values


def _config(
    grid: Grid,
    setting: Setting,
    base: dict[str, Any] | None,
    overrides: dict[str, Any] | None,
    **cell: Any,
) -> TrainConfig:
    """The validated config of one cell; a ConfigError's message does not say where (the caller does)."""
    values = {**grid.base, **with_its_sample(base or {}), **setting.overrides, **(overrides or {})}
    for key in RUNNER_KEYS:
        values.pop(key, None)
    return TrainConfig.from_dict({**values, **cell}, source="").validate()


def _valid_without(grid: Grid, base: dict[str, Any] | None, overrides: dict[str, Any]) -> bool:
    """Whether every setting is valid without the command line's overrides: then they are what is wrong."""
    try:
        for setting in grid.settings:
            _config(grid, setting, base, None, output_dir="unused", seed=0)
    except ConfigError:
        return False
    return True
