"""The module paths of simcse 0.1 that users import (``simcse.api``, ``simcse.index``, ``simcse.config``) still
work after the move into layer folders, each with a DeprecationWarning that names the new path."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MOVED = [("simcse.api", "simcse.use.api", "SimCSE"), ("simcse.index", "simcse.use.index", "NumpyExact"),
         ("simcse.config", "simcse.training.config", "TrainConfig")]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "name"), MOVED)
def test_an_old_path_gives_the_new_object_with_a_warning(old, new, name):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {new}: import {name} from there"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)


def test_from_import_of_an_old_path_works_and_points_at_the_caller():
    code = ("import warnings\nwarnings.simplefilter('always')\nwith warnings.catch_warnings(record=True) as w:\n"
            "    from simcse.config import TrainConfig\n"
            "assert TrainConfig().batch_size == 64\n"
            "assert len(w) == 1 and w[0].category is DeprecationWarning, w\n"
            "assert w[0].filename == '<string>', w[0].filename\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        importlib.import_module("simcse.index").NoSuchThing  # noqa: B018
