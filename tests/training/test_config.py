"""TrainConfig: YAML recipes, flags, override precedence, types and every validation rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from simcse.core.errors import ConfigError
from simcse.core.safe_yaml import read_yaml
from simcse.training.config import TrainConfig, parse_flags

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = sorted(CONFIGS.glob("*.yaml")) + sorted(CONFIGS.glob("*.yml"))


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def valid(**changes) -> TrainConfig:
    return dataclasses.replace(TrainConfig(train_file="train.txt"), **changes)


# ---------------------------------------------------------------------------------------------- YAML
def test_yaml_load_coerces_types(tmp_path):
    path = write(
        tmp_path,
        "train_file: data/nli.csv\nbatch_size: 128\nlearning_rate: 5e-5\ntemperature: 0.05\ndo_mlm: yes\n"
        "shuffle: 'false'\nmax_steps: 1e3\nmodel_name_or_path: null\ndata_dir: none\nextra: {note: baseline}\n",
    )
    config = TrainConfig.from_yaml(path)
    assert config.train_file == "data/nli.csv"
    assert config.batch_size == 128 and isinstance(config.batch_size, int)
    assert config.learning_rate == 5e-5 and isinstance(
        config.learning_rate, float
    )  # YAML 1.1 reads 5e-5 as a str
    assert config.do_mlm is True and config.shuffle is False
    assert config.max_steps == 1000 and isinstance(config.max_steps, int)
    assert config.model_name_or_path is None and config.data_dir is None
    assert config.extra == {"note": "baseline"}
    assert config.pooler == TrainConfig.pooler  # untouched keys keep their defaults
    config.validate()


def test_empty_yaml_is_the_defaults(tmp_path):
    assert TrainConfig.from_yaml(write(tmp_path, "# nothing\n")) == TrainConfig()


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write(tmp_path, "train_file: a.txt\nbatch_szie: 32\n")
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_yaml(path)
    assert str(info.value) == f"{path}: unknown config key 'batch_szie' (did you mean 'batch_size'?)"


def test_unknown_key_without_a_close_match(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'zzzzzz'$"):
        TrainConfig.from_yaml(write(tmp_path, "zzzzzz: 1\n"))


@pytest.mark.parametrize("text", ["1: 2\n", "yes: 3\n", "null: 1\n"])
def test_non_string_key_is_an_unknown_key(tmp_path, text):
    with pytest.raises(ConfigError, match="unknown config key"):
        TrainConfig.from_yaml(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "key"),
    [("batch_size: abc", "batch_size"), ("batch_size: 2.5", "batch_size"), ("batch_size: true", "batch_size"),
     ("batch_size: '1e400'", "batch_size"), ("seed: 1.5e0", "seed"), ("max_steps: .inf", "max_steps"),
     ("shuffle: maybe", "shuffle"), ("do_mlm: 2", "do_mlm"), ("temperature: hot", "temperature"),
     ("temperature: false", "temperature"), ("pooler: [cls]", "pooler"), ("extra: 3", "extra"),
     ("batch_size:", "batch_size")],
)  # fmt: skip
def test_wrong_types_name_file_and_key(tmp_path, text, key):
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_yaml(path)
    assert str(info.value).startswith(f"{path}: {key} ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("True", True), ("1", True), ("yes", True), ("on", True), ("false", False), ("FALSE", False),
     ("0", False), ("no", False), ("off", False), (True, True), (False, False)],
)  # fmt: skip
def test_bool_strings(value, expected):
    assert TrainConfig.from_dict({"shuffle": value}).shuffle is expected


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "train_file: a.txt\nbatch_size: 64\n  pooler: avg\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: invalid YAML (")
    assert "\n" not in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_mapping(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="expected a mapping") as info:
        TrainConfig.from_yaml(path)
    assert str(info.value).startswith(str(path))


def test_missing_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_undecodable_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"train_file: \xff\n")
    with pytest.raises(ConfigError, match="cannot read") as info:
        TrainConfig.from_yaml(path)
    assert str(info.value).startswith(str(path))


def test_to_yaml_round_trips(tmp_path):
    config = valid(batch_size=16, pooler="avg", extra={"a": [1, 2]})
    assert TrainConfig.from_yaml(write(tmp_path, config.to_yaml())) == config


# ---------------------------------------------------------------------------------------------- flags
def test_flags_forms():
    values = parse_flags(
        ["--train_file", "a.txt", "--batch_size=16", "--do_mlm", "--max-seq-len", "24", "--shuffle", "false",
         "--learning-rate=1e-5", "--compile", "--seed", "-3"]
    )  # fmt: skip
    assert values == {"train_file": "a.txt", "batch_size": "16", "do_mlm": "true", "max_seq_len": "24",
                      "shuffle": "false", "learning_rate": "1e-5", "compile": "true", "seed": "-3"}  # fmt: skip
    config = TrainConfig().override(values)
    assert (config.batch_size, config.max_seq_len, config.learning_rate) == (16, 24, 1e-5)
    assert config.do_mlm is True and config.compile is True and config.shuffle is False


def test_flag_value_with_equals_sign_and_empty_value():
    values = parse_flags(["--output_dir=runs/a=b", "--model_name_or_path="])
    assert values == {"output_dir": "runs/a=b", "model_name_or_path": ""}
    assert TrainConfig().override(values).model_name_or_path is None


def test_extra_as_a_flag():
    assert TrainConfig().override(parse_flags(["--extra", "{note: baseline}"])).extra == {"note": "baseline"}
    with pytest.raises(ConfigError, match="extra must be a mapping"):
        TrainConfig().override(parse_flags(["--extra", "plain"]))


def test_every_key_is_a_flag():
    keys = TrainConfig.field_names()
    assert parse_flags([f"--{key}=x" for key in keys]) == dict.fromkeys(keys, "x")
    dashed = [arg for key in keys for arg in (f"--{key.replace('_', '-')}", "x")]
    assert parse_flags(dashed) == dict.fromkeys(keys, "x")


@pytest.mark.parametrize(
    ("args", "match"),
    [(["--batch_sise", "3"], r"unknown option --batch_sise \(did you mean 'batch_size'\?\)"),
     (["--max-seq-lenn", "3"], "unknown option --max_seq_lenn"),
     (["train.txt"], "unexpected argument 'train.txt'"), (["-b", "3"], "unexpected argument '-b'"),
     (["--"], "unexpected argument '--'"), (["--batch_size"], "--batch_size needs a value"),
     (["--output_dir", "--dev_eval", "false"], "--output_dir needs a value"),
     (["--batch_size", "8", "9"], "unexpected argument '9'")],
)  # fmt: skip
def test_bad_flags(args, match):
    with pytest.raises(ConfigError, match=match):
        parse_flags(args)


def test_bad_flag_value_names_the_key():
    with pytest.raises(ConfigError, match=r"^command line: batch_size must be int, got 'abc'$"):
        TrainConfig().override(parse_flags(["--batch_size", "abc"]))


def test_flags_override_yaml_and_yaml_overrides_defaults(tmp_path):
    path = write(tmp_path, "train_file: a.txt\nbatch_size: 128\npooler: avg\ntemperature: 0.1\n")
    config = TrainConfig.from_yaml(path).override(parse_flags(["--batch_size", "32", "--temperature=0.07"]))
    assert config.batch_size == 32 and config.temperature == 0.07  # flags win
    assert config.pooler == "avg" and config.train_file == "a.txt"  # YAML kept where no flag
    assert config.max_seq_len == TrainConfig.max_seq_len  # defaults elsewhere


def test_flags_alone_make_a_valid_config():
    config = TrainConfig().override(parse_flags(["--train_file", "a.txt", "--batch_size", "8"])).validate()
    assert config.train_file == "a.txt" and config.batch_size == 8


# ---------------------------------------------------------------------------------------------- validation
def test_defaults_with_a_train_file_are_valid():
    valid().validate()


NAN, INF = float("nan"), float("inf")
RULES = [
    ("pooler", {"pooler": "max"}),
    ("objective", {"objective": "both"}),
    ("precision", {"precision": "fp8"}),
    ("lr_scheduler", {"lr_scheduler": "cosine"}),
    ("metric_for_best_model", {"metric_for_best_model": "loss"}),
    ("final_eval", {"final_eval": "all"}),
    ("packed", {"packed": "yes"}),
    ("attn_implementation", {"attn_implementation": "flash"}),
    ("train_file", {"train_file": ""}),
    ("gradient_accumulation_steps", {"gradient_accumulation_steps": 4}),
    ("mlp_only_train", {"mlp_only_train": True, "pooler": "avg"}),
    ("temperature", {"temperature": 0.0}),
    ("temperature", {"temperature": NAN}),
    ("learning_rate", {"learning_rate": -1e-5}),
    ("learning_rate", {"learning_rate": INF}),
    ("eval_batch_size", {"eval_batch_size": 0}),
    ("batch_size", {"batch_size": 1}),
    ("max_seq_len", {"max_seq_len": 2}),
    ("hard_negative_weight", {"hard_negative_weight": -0.5}),
    ("hard_negative_weight", {"hard_negative_weight": INF}),
    ("mlm_probability", {"mlm_probability": 0.0}),
    ("mlm_probability", {"mlm_probability": 1.0}),
    ("mlm_weight", {"mlm_weight": -0.1}),
    ("mlm_weight", {"mlm_weight": NAN}),
    ("warmup_ratio", {"warmup_ratio": 1.0}),
    ("warmup_ratio", {"warmup_ratio": -0.1}),
    ("warmup_steps", {"warmup_steps": 10, "warmup_ratio": 0.1}),
    ("num_epochs", {"num_epochs": -1}),
    ("max_steps", {"max_steps": -1}),
    ("eval_steps", {"eval_steps": -1}),
    ("save_steps", {"save_steps": -1}),
    ("gradcache_chunk_size", {"gradcache_chunk_size": -1}),
    ("warmup_steps", {"warmup_steps": -1}),
    ("max_train_samples", {"max_train_samples": -1}),
    ("num_threads", {"num_threads": -1}),
    ("logging_steps", {"logging_steps": -1}),
    ("seed", {"seed": -1}),
    ("max_steps", {"num_epochs": 0, "max_steps": 0}),
    ("save_total_limit", {"save_total_limit": 0}),
    ("weight_decay", {"weight_decay": -0.01}),
    ("weight_decay", {"weight_decay": NAN}),
    ("max_grad_norm", {"max_grad_norm": -1.0}),
    ("max_grad_norm", {"max_grad_norm": NAN}),
    ("adam_beta1", {"adam_beta1": 1.0}),
    ("adam_beta2", {"adam_beta2": -0.1}),
    ("adam_epsilon", {"adam_epsilon": 0.0}),
    ("gradcache_chunk_size", {"gradcache_chunk_size": 64, "batch_size": 64}),
    ("hard_negative_weight", {"objective": "unsup", "hard_negative_weight": 0.5}),
    ("device", {"device": "gpu"}),
]


@pytest.mark.parametrize(("key", "changes"), RULES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(RULES)])
def test_validation_rule_names_the_key(key, changes):
    with pytest.raises(ConfigError) as info:
        valid(**changes).validate()
    message = str(info.value)
    assert key in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "changes",
    [{"device": "cuda:1"}, {"device": "cpu"}, {"num_epochs": 0, "max_steps": 5}, {"max_grad_norm": 0.0},
     {"warmup_ratio": 0.1}, {"gradcache_chunk_size": 8, "batch_size": 64}, {"objective": "sup", "hard_negative_weight": 0.0},
     {"mlp_only_train": True, "pooler": "cls"}, {"seed": 0}, {"pooler": "avg_first_last"}],
)  # fmt: skip
def test_valid_combinations(changes):
    valid(**changes).validate()


def test_gradient_accumulation_refusal_explains_gradcache():
    with pytest.raises(ConfigError) as info:
        valid(gradient_accumulation_steps=2).validate()
    message = str(info.value)
    assert "gradient_accumulation_steps must be 1" in message
    assert "in-batch negatives" in message and "GradCache" in message and "gradcache_chunk_size" in message


# ---------------------------------------------------------------------------------------------- recipes
@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_loads_and_validates(path):
    config = TrainConfig.from_yaml(path).validate()
    assert config.train_file


def test_configs_links_every_recipe_of_the_package_and_nothing_else():
    from simcse.training.config.recipes import RECIPES_DIR, builtin_recipes

    assert len(RECIPES) >= 17  # the quickstart, the paper's eight, the follow-up methods'
    assert sorted(p.stem for p in RECIPES) == builtin_recipes()
    assert all(p.resolve() == (RECIPES_DIR / p.name).resolve() for p in RECIPES)  # one copy, not two


def test_a_recipe_is_addressed_by_name(tiny_bert, tmp_path, capsys):
    from tests.helpers import run

    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(f"sentence {i} of the file" for i in range(12)) + "\n")
    code, _, err = run(capsys, ["train", "quickstart", "--model_name_or_path", str(tiny_bert), "--train_file", str(txt),
                                "--max_train_samples", "0", "--max_steps", "1", "--dev_eval", "false",
                                "--final_eval", "none", "--output_dir", str(tmp_path / "o")])  # fmt: skip
    assert code == 0, err
    saved = (tmp_path / "o" / "train_config.yaml").read_text()
    assert "mlp_only_train: true" in saved and "temperature: 0.05" in saved  # the quickstart's values
    code, _, err = run(capsys, ["train", "no-such-recipe"])
    assert (
        code == 2 and "no-such-recipe: no such config file or recipe; recipes: ct-bert-base-uncased," in err
    )


def test_simcse_recipes_lists_each_with_one_line(capsys):
    from simcse.training.config.recipes import builtin_recipes
    from tests.helpers import run

    code, out, _ = run(capsys, ["recipes"])
    lines = out.strip().splitlines()
    assert code == 0 and [line.split()[0] for line in lines] == builtin_recipes()
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # every recipe says what it is
    assert any(line.startswith("quickstart ") and "CPU quickstart" in line for line in lines)
