"""The family's methods as modules: each one is listed, brings its options into TrainConfig under its own
group, is torch-free at import, and is asked for its pieces only when the config enables it."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import subprocess
import sys

import pytest

from simcse.core.errors import ConfigError
from simcse.training import methods
from simcse.training.config import TrainConfig, option_help
from simcse.training.methods.base import Method

NOT_METHODS = {"base", "combinations"}


def test_every_method_module_is_listed_once():
    names = {m.name for m in pkgutil.iter_modules(methods.__path__)} - NOT_METHODS
    listed = [m.__module__.rpartition(".")[2] for m in (type(x) for x in methods.METHODS)]
    assert sorted(listed) == sorted(names) and len(set(listed)) == len(listed)
    for name in names:
        assert importlib.import_module(f"simcse.training.methods.{name}").METHOD in methods.METHODS


@pytest.mark.parametrize("method", methods.METHODS, ids=lambda m: m.name)
def test_a_method_brings_its_options_under_its_own_group(method: Method):
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    own = dataclasses.fields(method.Options)
    assert own, f"{method.name} has no options"
    groups = {f.metadata["group"] for f in own}
    assert len(groups) == 1 and all(fields[f.name].metadata is f.metadata for f in own)
    shown = dict(option_help())
    assert [key for key, _, _ in shown[groups.pop()]] == [f.name for f in own]
    assert not method.enabled(TrainConfig(train_file="x.txt"))  # off by default


def test_the_method_modules_import_no_torch():
    code = ("import sys\nimport simcse.training.methods, simcse.training.config\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'numpy'})\n"
            "assert not heavy, heavy\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_enabled_follows_the_options_in_method_order():
    config = TrainConfig(train_file="x.txt", do_mlm=True, noise_negatives=4, word_repetition=0.3)
    assert [m.name for m in methods.enabled(config)] == ["gs_infonce", "esimcse", "mlm"]


def test_every_method_and_the_rules_between_them_report_together():
    config = TrainConfig(train_file="x.txt", word_repetition=1.5, noise_std=0, negatives_without_dropout=True,
                         loss="binary", guide_model="m")  # fmt: skip
    with pytest.raises(ConfigError) as info:
        config.validate()
    message = str(info.value)
    assert message.startswith("4 problems: ")
    for part in ("word_repetition must be in [0, 1)", "noise_std must be > 0",
                 "it does not combine with loss binary",
                 "negatives_without_dropout builds its own negatives; guide_model filters the batch's"):  # fmt: skip
        assert part in message, part
