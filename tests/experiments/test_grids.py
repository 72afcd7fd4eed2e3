"""The built-in grids: each loads, every cell validates, and each names the options its table varies."""

from __future__ import annotations

import pytest

from simcse.experiments.grid import GRIDS_DIR, builtin_grids, cells, load_grid

EXPECTED = {
    "dropout": ("dropout", 8),
    "temperature": ("temperature", 6),
    "pooler": ("pooler", 4),
    "mlm": ("mlm_weight", 4),
    "batch": ("batch_size", 12),
    "augmentation": ("augment", 10),
    "hard-negative": ("hard_negative_weight", 5),
    "supervised-data": ("train_file", 5),
    "alignment-uniformity": ("geometry_steps", 4),
    "objective": ("encoders", 8),
}


def test_every_builtin_grid_is_listed():
    assert set(EXPECTED) <= set(builtin_grids())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_builtin_grid_validates_every_cell(name, tmp_path):
    grid = load_grid(name)
    key, settings = EXPECTED[name]
    assert len(grid.settings) == settings
    assert any(key in s.overrides for s in grid.settings)
    todo = cells(grid, tmp_path)
    assert len(todo) == settings * len(grid.seeds)
    assert len({c.out for c in todo}) == len(todo)  # every cell its own directory
    assert all(c.config.seed == c.seed for c in todo)


def test_the_grids_ship_with_the_package_and_configs_points_at_them():
    from pathlib import Path

    link = Path(__file__).resolve().parents[2] / "configs" / "experiments"
    assert link.resolve() == GRIDS_DIR.resolve()


def test_the_budget_names_what_every_cell_shares_and_says_what_the_settings_vary(tmp_path):
    from simcse.experiments import budget_of

    hard = budget_of(cells(load_grid("hard-negative"), tmp_path), 3)
    assert "batch 64" in hard and "each setting's training file" in hard  # not the first setting's file
    assert "triples-no-hard-negative" not in hard
    batch = budget_of(cells(load_grid("batch"), tmp_path), 3)
    assert "each setting's batch size" in batch and "on wiki1m (its first 11,914 rows)" in batch
    dropout = budget_of(cells(load_grid("dropout"), tmp_path, overrides={"max_steps": 50}), 3)
    assert dropout.startswith("the embedded all-MiniLM-L6-v2, 50 steps of batch 64 on wiki1m")
    assert dropout.endswith("3 seed(s)")


def test_a_base_recipe_that_swaps_the_file_trains_on_all_of_it(tmp_path):
    from simcse.core.safe_yaml import read_yaml
    from simcse.training.config.recipes import recipe_path

    grid = load_grid("dropout")
    assert grid.base["max_train_samples"] == 11914  # the grids' CPU-sized sample
    paper = read_yaml(recipe_path("unsup-bert-base-uncased"))
    config = cells(grid, tmp_path, base=paper)[0].config
    assert config.model_name_or_path == "bert-base-uncased" and config.max_train_samples == 0
    capped = cells(grid, tmp_path, base={**paper, "max_train_samples": 5000})[0].config
    assert capped.max_train_samples == 5000
    assert cells(grid, tmp_path, base={"batch_size": 32})[0].config.max_train_samples == 11914
