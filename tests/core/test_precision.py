"""precision auto per CPU (flags mocked through SIMCSE_CPU_FLAGS), and the bf16 copy of the weights that
encodes on CPUs with bf16 units."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from simcse.core.errors import ConfigError
from simcse.core.runtime import choose_precision, encoding_dtype, encoding_precision
from simcse.modeling import encoder as encoder_module
from simcse.modeling.encoder import Encoder
from tests.helpers import SENTENCES

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("flags", "expected", "unit"),
    [
        ("avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8", "bf16", "AMX bf16 tiles"),
        ("avx2,avx512f,avx512_bf16", "bf16", "AVX512-BF16"),
        ("avx2 avx512f avx512_vnni", "fp32", None),
        ("none", "fp32", None),
    ],
)
def test_auto_picks_bf16_exactly_where_the_cpu_has_bf16_units(monkeypatch, flags, expected, unit):
    monkeypatch.setenv("SIMCSE_CPU_FLAGS", flags)
    for job in ("training", "encoding"):
        chosen = choose_precision("auto", CPU, job)
        assert chosen.name == expected
        assert chosen.reason.startswith("auto: ")
        if unit:
            assert unit in chosen.reason
            assert ("autocast over fp32 weights" if job == "training" else "bf16 weights") in chosen.reason
        else:
            assert "no bf16 units" in chosen.reason
    dtype, line = encoding_dtype(None)
    assert dtype == (torch.bfloat16 if expected == "bf16" else None)
    assert line.startswith(f"precision {expected} (auto: ")


def test_an_explicit_precision_is_kept_whatever_the_cpu(monkeypatch):
    monkeypatch.setenv("SIMCSE_CPU_FLAGS", "amx_bf16 avx512_bf16")
    assert choose_precision("fp32", CPU).line == "precision fp32 (asked for)"
    monkeypatch.setenv("SIMCSE_CPU_FLAGS", "none")
    assert choose_precision("bf16", CPU, "encoding").dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="precision must be auto, fp32, bf16 or fp16"):
        choose_precision("int4", CPU)


def test_an_encoding_job_reads_its_precision_from_the_graph_then_the_dtype_then_the_preference(monkeypatch):
    monkeypatch.setenv("SIMCSE_CPU_FLAGS", "avx512_bf16")
    graph = "precision int8 (the onnx graph's: model_qint8.onnx)"
    assert encoding_precision("fp32", CPU, torch.bfloat16, graph) == (None, graph)
    assert encoding_precision("fp32", CPU, torch.bfloat16) == (
        torch.bfloat16,
        "precision bfloat16 (asked for)",
    )
    assert encoding_precision("auto", CPU) == encoding_dtype("auto", CPU)
    assert encoding_precision(None, CPU)[0] == torch.bfloat16


def test_the_training_environment_and_its_first_lines_say_which_precision_and_why(
    monkeypatch, tiny_bert, tmp_path
):
    from simcse.training.config import TrainConfig
    from simcse.training.setup import resolve

    monkeypatch.setenv("SIMCSE_CPU_FLAGS", "avx512_bf16")
    config = TrainConfig(model_name_or_path=str(tiny_bert), train_file="x.txt", output_dir=str(tmp_path / "o"),
                         device="cpu")  # fmt: skip
    env = resolve(config)
    assert env.precision == "bf16" and "AVX512-BF16" in env.precision_reason
    assert isinstance(env.autocast, torch.autocast)
    monkeypatch.setenv("SIMCSE_CPU_FLAGS", "none")
    env = resolve(config)
    assert env.precision == "fp32" and "no bf16 units" in env.precision_reason


@pytest.fixture
def encoder(tiny_bert4) -> Encoder:
    return Encoder.load(str(tiny_bert4), "avg_first_last")


def test_bf16_encoding_uses_a_bf16_copy_of_the_weights_and_leaves_the_model_alone(encoder):
    fingerprint = encoder.fingerprint()
    fp32 = encoder.encode(SENTENCES, normalize=True)
    bf16 = encoder.encode(SENTENCES, normalize=True, dtype=torch.bfloat16)
    twin = encoder.__dict__["_twin"][1]
    assert twin is not None and next(twin.backbone.parameters()).dtype == torch.bfloat16
    assert twin.tokenizer is encoder.tokenizer
    assert all(t.dtype == torch.float32 for t in encoder.state_dict().values() if t.is_floating_point())
    assert not any("_twin" in k for k in encoder.state_dict())
    assert encoder.fingerprint() == fingerprint
    assert bf16.dtype == np.float32
    assert float((fp32 * bf16).sum(-1).min()) > 0.99
    assert not np.array_equal(fp32, bf16)  # computed in bf16, not fp32
    # the copy is reused while the weights stay, and rebuilt once training changes one
    encoder.encode(SENTENCES, dtype=torch.bfloat16)
    assert encoder.__dict__["_twin"][1] is twin
    with torch.no_grad():
        next(encoder.backbone.parameters()).add_(0.01)
    encoder.encode(SENTENCES, dtype=torch.bfloat16)
    assert encoder.__dict__["_twin"][1] is not twin


@pytest.mark.parametrize("packed", [True, False])
def test_bf16_weights_run_the_packed_and_the_padded_forward(tiny_bert4, packed):
    enc = Encoder.load(str(tiny_bert4), "avg", packed=packed)
    assert enc.packed is packed
    fp32 = enc.encode(SENTENCES, normalize=True)
    bf16 = enc.encode(SENTENCES, normalize=True, dtype=torch.bfloat16)
    assert float((fp32 * bf16).sum(-1).min()) > 0.99


def test_a_model_that_loses_quality_in_bf16_encodes_in_fp32_with_a_warning(encoder, monkeypatch, caplog):
    monkeypatch.setattr(encoder_module, "MIN_GUARD_COSINE", 1.01)  # no copy can pass
    with caplog.at_level(logging.WARNING, logger="simcse.modeling.encoder"):
        got = encoder.encode(SENTENCES, dtype=torch.bfloat16)
    assert "bf16 weights lose too much on this model" in caplog.text
    np.testing.assert_array_equal(got, encoder.encode(SENTENCES))


def test_the_api_and_the_cli_use_and_print_the_precision_auto_picks(monkeypatch, tiny_bert, capsys):
    from simcse.cli import main
    from simcse.use.api import SimCSE

    monkeypatch.setenv("SIMCSE_CPU_FLAGS", "amx_bf16 avx512_bf16")
    model = SimCSE(str(tiny_bert), device="cpu")
    assert model.dtype == torch.bfloat16 and "AMX bf16 tiles" in model.precision_line
    assert SimCSE(str(tiny_bert), device="cpu", precision="fp32").dtype is None
    assert main(["similarity", str(tiny_bert), "a cat", "a dog", "--pooler", "avg"]) == 0
    err = capsys.readouterr().err
    assert "precision bf16 (auto: this CPU has AMX bf16 tiles and AVX512-BF16; bf16 weights)" in err
    assert (
        main(["similarity", str(tiny_bert), "a cat", "a dog", "--pooler", "avg", "--precision", "fp32"]) == 0
    )
    assert "precision fp32 (asked for)" in capsys.readouterr().err
