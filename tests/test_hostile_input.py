"""Malformed and hostile input, property-based, over every reader: training txt/csv/tsv, the SentEval STS and
transfer files, YAML recipes and command-line flags.

Every input either parses (and a well-formed one reads back exactly what was written) or raises a
``SimCSEError`` whose message is one line naming the file (and the line where there is one); never another
exception. YAML is read with ``yaml.safe_load``: no ``!!python`` tag ever runs.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simcse.cli import main
from simcse.core.errors import ConfigError, DataError, SimCSEError
from simcse.data.sentence_files import HEADER_NAMES, TrainingData, read_training_file
from simcse.evaluation.sts import load_sts_task, read_sts_subset
from simcse.evaluation.transfer import TransferData, load_transfer_task
from simcse.training.config import TRACKERS, TrainConfig, parse_flags
from tests.helpers import QUIET

FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

# Byte chunks that break parsers: invalid UTF-8, NUL, BOMs, every line ending, quotes, separators, a huge
# line (longer than the csv module's field limit), Unicode line separators.
CHUNKS = [b"a", b"b c", b" ", b",", b"\t", b'"', b"'", b"\n", b"\r\n", b"\r", b"\x00", b"\xff", b"\xc3\xa9",
          b"\xe2\x82", b"\xef\xbb\xbf", b"\xfe\xff", b"\xc2\x85", b"\xe2\x80\xa8", b"\x0b", b"\x0c", b"1",
          b"4.5", b"-1", b"nan", b"inf", b"1e400", b"NUM:dist", b"ABBR:", b"sent0", b"hard_neg",
          b"x" * 140_000]  # fmt: skip
HOSTILE_BYTES = st.one_of(
    st.binary(max_size=300), st.lists(st.sampled_from(CHUNKS), max_size=40).map(b"".join)
)


def assert_one_line_naming(error: SimCSEError, *paths: Path) -> None:
    """The message is one line and starts with one of ``paths`` (then ``:line`` where there is one)."""
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert any(message.startswith(f"{p}:") or message.startswith(f"{p} ") for p in paths), message
    line = getattr(error, "line", None)
    if line is not None:
        assert message.startswith(f"{error.path}:{line}: ") and line >= 1, message


# ---------------------------------------------------------------------------------------------- training files
@settings(max_examples=120, deadline=None, suppress_health_check=FIXTURE_OK)
@given(content=HOSTILE_BYTES, suffix=st.sampled_from([".txt", ".csv", ".tsv", ".CSV"]))
def test_training_file_reader_parses_or_raises_data_error(tmp_path, content, suffix):
    path = tmp_path / f"train{suffix}"
    path.write_bytes(content)
    try:
        data = read_training_file(path)
    except DataError as e:
        assert_one_line_naming(e, path)
        if e.line is not None:
            assert e.line <= content.count(b"\n") + content.count(b"\r") + 1
        return
    assert isinstance(data, TrainingData) and 1 <= data.columns <= 3 and len(data) >= 1
    assert all(
        len(row) == data.columns and all(f.strip() and "\x00" not in f for f in row) for row in data.rows
    )


# text a line (or a field) can hold: anything but NUL, CR and LF, not blank
LINE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n"), min_size=1, max_size=30
).filter(lambda s: s.strip())
ENDINGS = st.sampled_from(["\n", "\r\n"])


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    lines=st.lists(st.one_of(LINE_TEXT, st.sampled_from(["", "  ", "\t"])), min_size=1, max_size=20),
    endings=st.lists(ENDINGS, min_size=20, max_size=20),
    bom=st.booleans(),
    final_newline=st.booleans(),
)
def test_txt_round_trips(tmp_path, lines, endings, bom, final_newline):
    sentences = [s for s in lines if s.strip()]
    text = "".join(line + end for line, end in zip(lines, endings))
    if not final_newline and lines[-1]:  # (an empty last line without its newline is no line)
        text = text[: -len(endings[len(lines) - 1])]
    path = tmp_path / "train.txt"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    if not sentences:
        with pytest.raises(DataError):
            read_training_file(path)
        return
    data = read_training_file(path)
    assert data.rows == [(s.rstrip("\r"),) for s in sentences]
    assert data.skipped_blank == len(lines) - len(sentences)


FIELD_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20
).filter(lambda s: s.strip() and s.strip().lower() not in HEADER_NAMES)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    columns=st.integers(1, 3),
    data=st.data(),
    header=st.booleans(),
    bom=st.booleans(),
    terminator=ENDINGS,
)
def test_csv_round_trips_with_any_quoting_inside_fields(tmp_path, columns, data, header, bom, terminator):
    # a bare CR is quoted by csv.writer only when it is part of the line terminator
    field = FIELD_TEXT if terminator == "\r\n" else FIELD_TEXT.filter(lambda s: "\r" not in s)
    rows = data.draw(st.lists(st.tuples(*[field] * columns), min_size=1, max_size=10))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=terminator)
    if header:
        writer.writerow(["sent0", "sent1", "hard_neg"][:columns])
    writer.writerows(rows)
    path = tmp_path / "train.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + buffer.getvalue().encode("utf-8"))
    result = read_training_file(path)
    assert result.rows == rows and result.columns == columns
    assert result.header == (("sent0", "sent1", "hard_neg")[:columns] if header else None)


TSV_FIELD = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\t\r\n"), min_size=1, max_size=20
).filter(lambda s: s.strip() and s.strip().lower() not in HEADER_NAMES)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(columns=st.integers(1, 3), data=st.data(), terminator=ENDINGS)
def test_tsv_round_trips_quotes_verbatim(tmp_path, columns, data, terminator):
    rows = data.draw(st.lists(st.tuples(*[TSV_FIELD] * columns), min_size=1, max_size=10))
    path = tmp_path / "train.tsv"
    path.write_bytes("".join("\t".join(row) + terminator for row in rows).encode("utf-8"))
    result = read_training_file(path)
    assert result.rows == rows


# ---------------------------------------------------------------------------------------------- SentEval STS
@pytest.fixture(scope="module")
def senteval_copy(tmp_path_factory, data_dir) -> Path:
    """A small copy of the SentEval tree: STS-B dev, SICK trial, one STS12 subset and the transfer tasks
    read below, each cut to its first lines."""
    root = tmp_path_factory.mktemp("senteval") / "downstream"
    source = data_dir / "senteval" / "downstream"
    files = ["STS/STSBenchmark/sts-dev.csv", "SICK/SICK_trial.txt", "STS/STS12-en-test/STS.input.MSRpar.txt",
             "STS/STS12-en-test/STS.gs.MSRpar.txt", "SST/binary/sentiment-train", "SST/binary/sentiment-dev",
             "SST/binary/sentiment-test", "TREC/train_5500.label", "TREC/TREC_10.label",
             "MRPC/msr_paraphrase_train.txt", "MRPC/msr_paraphrase_test.txt"]  # fmt: skip
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        with (source / rel).open("rb") as f:
            (root / rel).write_bytes(b"".join(f.readline() for _ in range(20)))
    return root


def _tree(base: Path, senteval_copy: Path, target: str, content: bytes) -> tuple[Path, Path]:
    root = base / "downstream"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(senteval_copy, root)
    (root / target).write_bytes(content)
    return root, root / target


def _splice(original: bytes, inserts: list[tuple[int, bytes]]) -> bytes:
    """``original`` with hostile chunks inserted at (relative) positions: mostly well-formed files."""
    out = original
    for position, chunk in inserts:
        cut = position % (len(out) + 1)
        out = out[:cut] + chunk + out[cut:]
    return out


MUTATION = st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(CHUNKS[:-1])), min_size=1, max_size=4)


@settings(max_examples=80, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    task=st.sampled_from(
        [
            ("STSBenchmark", "STS/STSBenchmark/sts-dev.csv", "dev"),
            ("SICKRelatedness", "SICK/SICK_trial.txt", "dev"),
            ("STS12", "STS/STS12-en-test/STS.input.MSRpar.txt", "test"),
            ("STS12", "STS/STS12-en-test/STS.gs.MSRpar.txt", "test"),
        ]  # fmt: skip
    ),
    replace=st.booleans(),
    content=HOSTILE_BYTES,
    inserts=MUTATION,
)
def test_sts_readers_parse_or_raise_data_error(tmp_path, senteval_copy, task, replace, content, inserts):
    name, target, split = task
    new = content if replace else _splice((senteval_copy / target).read_bytes(), inserts)
    root, path = _tree(tmp_path, senteval_copy, target, new)
    if name == "STS12":  # the other STS12 subsets are not in the copy: read the subset itself
        base = root / "STS" / "STS12-en-test"
        inputs, gold = base / "STS.input.MSRpar.txt", base / "STS.gs.MSRpar.txt"
        try:
            pairs = read_sts_subset(inputs, gold)
        except DataError as e:
            assert_one_line_naming(e, inputs, gold)
            return
        assert len(pairs.a) == len(pairs.b) == len(pairs.gold) == len(pairs.lines)
        return
    try:
        data = load_sts_task(name, root, split)
    except DataError as e:
        assert_one_line_naming(e, path)
        return
    assert data.n >= 1


STS_SENTENCE = st.text(st.characters(blacklist_categories=("Cs", "Zl", "Zp", "Cc")), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    rows=st.lists(
        st.tuples(STS_SENTENCE, STS_SENTENCE, st.one_of(st.none(), st.floats(0, 5, allow_nan=False))),
        min_size=1,
        max_size=12,
    ),
    bom=st.booleans(),
)
def test_sts_subset_round_trips(tmp_path, rows, bom):
    prefix = "\ufeff" if bom else ""
    inputs, gold = tmp_path / "STS.input.x.txt", tmp_path / "STS.gs.x.txt"
    inputs.write_text(prefix + "".join(f"{a}\t{b}\n" for a, b, _ in rows), encoding="utf-8")
    gold.write_text(
        prefix + "".join(("" if s is None else repr(s)) + "\n" for _, _, s in rows), encoding="utf-8"
    )
    pairs = read_sts_subset(inputs, gold)
    kept = [(i, r) for i, r in enumerate(rows, start=1) if r[2] is not None]
    assert pairs.a == [" ".join(a.split()) for _, (a, _, _) in kept]
    assert pairs.b == [" ".join(b.split()) for _, (_, b, _) in kept]
    assert pairs.gold.tolist() == [s for _, (_, _, s) in kept]
    assert pairs.lines == [i for i, _ in kept]


def test_sts_invalid_utf8_after_a_bom_names_the_right_line_and_byte(tmp_path, senteval_copy):
    target = "STS/STSBenchmark/sts-dev.csv"
    original = (senteval_copy / target).read_bytes()
    first, rest = original.split(b"\n", 1)
    root, path = _tree(tmp_path, senteval_copy, target, b"\xef\xbb\xbf" + first + b"\n\xff" + rest)
    with pytest.raises(DataError, match=r"sts-dev\.csv:2: not valid UTF-8 \(byte 0xff\)"):
        load_sts_task("STSBenchmark", root, "dev")


# ---------------------------------------------------------------------------------------------- transfer
@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    task=st.sampled_from(
        [
            ("SST2", "SST/binary/sentiment-dev"),
            ("TREC", "TREC/TREC_10.label"),
            ("MRPC", "MRPC/msr_paraphrase_test.txt"),
        ]  # fmt: skip
    ),
    replace=st.booleans(),
    content=HOSTILE_BYTES,
    inserts=MUTATION,
)
def test_transfer_loaders_parse_or_raise_data_error(tmp_path, senteval_copy, task, replace, content, inserts):
    name, target = task
    new = content if replace else _splice((senteval_copy / target).read_bytes(), inserts)
    root, path = _tree(tmp_path, senteval_copy, target, new)
    try:
        data = load_transfer_task(name, root)
    except DataError as e:
        assert_one_line_naming(e, path)
        return
    assert isinstance(data, TransferData)
    assert all(len(examples) >= 1 for examples in data.splits.values())


SST_SENTENCE = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\t\r\n"), min_size=1, max_size=25
).filter(lambda s: s.strip())


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE_OK)
@given(rows=st.lists(st.tuples(SST_SENTENCE, st.integers(0, 1)), min_size=1, max_size=10), ending=ENDINGS)
def test_sst2_round_trips(tmp_path, senteval_copy, rows, ending):
    content = "".join(f"{s}\t{label}{ending}" for s, label in rows).encode("utf-8")
    root, _ = _tree(tmp_path, senteval_copy, "SST/binary/sentiment-dev", content)
    assert load_transfer_task("SST2", root).splits["dev"] == [
        (" ".join(s.split()), label) for s, label in rows
    ]


# ---------------------------------------------------------------------------------------------- YAML
YAML_CHUNKS = ["train_file", "batch_size", "learning_rate", "extra", "seed", "pooler", "do_mlm", "temprature",
               "model_name_or_path", ": ", ":", "\n", "\r\n", "\r", "  ", "- ", "[", "]", "{", "}", ", ", "'",
               '"', "#", "\t", "\x00", "\ufeff", "---\n", "...\n", "<<: ", "? ", "&a ", "*a", "&b [*a, *a, *a]",
               "!!binary aGk=", "!!set {a, b}", "!!timestamp 2001-12-14", "!!float", "!!str", "!!int", ".inf",
               ".nan", "~", "null", "yes", "off", "64", "-1", "1e3", "1" * 5000, "3.5", "x.txt", "avg",
               "!!python/object/apply:os.getcwd []", "!<tag:yaml.org,2002:python/name:os.system>", "%YAML 1.1\n",
               "\\0", "\\x00", "[" * 200, "{a: " * 60]  # fmt: skip


def _python_tag(marker: Path) -> str:
    return f"!!python/object/apply:builtins.open ['{marker}', 'w']"


@settings(max_examples=250, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    chunks=st.lists(st.sampled_from(YAML_CHUNKS + ["MARKER"]), max_size=30),
    raw=st.one_of(st.none(), st.binary(max_size=200)),
)
def test_yaml_config_parses_or_raises_config_error(tmp_path, chunks, raw):
    marker = tmp_path / "pwned"
    path = tmp_path / "recipe.yaml"
    text = "".join(_python_tag(marker) if c == "MARKER" else c for c in chunks)
    path.write_bytes(raw if raw is not None else text.encode("utf-8"))
    try:
        config = TrainConfig.from_yaml(path)
    except ConfigError as e:
        assert_one_line_naming(e, path)
        assert len(str(e)) < 500
    else:
        again = tmp_path / "again.yaml"
        again.write_text(config.to_yaml(), encoding="utf-8")
        assert TrainConfig.from_yaml(again).to_yaml() == config.to_yaml()
    assert not marker.exists(), "a !!python tag was executed"


def _valid_value(name: str) -> st.SearchStrategy:
    from simcse.training.config.parsing import base_type

    kind = base_type(TrainConfig, name)
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(-(10**12), 10**12)
    if kind is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind is dict:
        return st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5)), max_size=3)
    if kind is list:  # report_to: tracker names
        return st.lists(st.sampled_from([*TRACKERS, "auto", "none"]), unique=True, max_size=4)
    text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
    if name in ("model_name_or_path", "data_dir"):
        return text.filter(lambda s: s.lower() not in ("", "none", "null"))
    return text


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_well_formed_yaml_round_trips(tmp_path, data):
    names = data.draw(st.lists(st.sampled_from(TrainConfig.field_names()), unique=True, max_size=12))
    values = {name: data.draw(_valid_value(name)) for name in names}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    config = TrainConfig.from_yaml(path)
    assert {name: getattr(config, name) for name in names} == values


FLAG_CHUNKS = ["--seed", "--seed=3", "--batch_size", "--batch-size", "--compile", "--do_mlm", "--extra",
               "--extra={a: [1", "--extra={a: 1}", "--learning_rate", "--learning_rat", "--max_steps", "--",
               "-x", "1e3", "1e999", "nan", "inf", "-5", "true", "maybe", "", "x.txt", "{a: &x [*x]}",
               "[" * 3000, "--train_file", "--output_dir", "--precision", "fp16", "--pooler=avg"]  # fmt: skip


@settings(max_examples=250, deadline=None)
@given(args=st.lists(st.one_of(st.sampled_from(FLAG_CHUNKS), st.text(max_size=10)), max_size=8))
def test_flags_parse_or_raise_config_error(args):
    try:
        TrainConfig().override(parse_flags(args))
    except ConfigError as e:
        assert "\n" not in str(e) and "\r" not in str(e) and len(str(e)) < 500, str(e)


# ---------------------------------------------------------------------------------------------- the CLI
def _bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "extra:\n" + "".join(f"  {line}\n" for line in lines) + "train_file: *a8\n"


YAML_CASES = {
    "python tag": (
        lambda marker: f"train_file: {_python_tag(marker)}\n",
        ":1: invalid YAML (could not determine",
    ),
    "alias bomb": (lambda marker: _bomb(), ": invalid YAML (expands to more than"),
    "self reference": (lambda marker: "train_file: x.txt\nextra: &a {me: *a}\n", ": invalid YAML (an alias"),
    "deep nesting": (lambda marker: "extra: " + "[" * 3000 + "]" * 3000 + "\n", ": invalid YAML (nested"),
    "NUL in a value": (lambda marker: 'train_file: "a\\0b.txt"\n', ": train_file must be str"),
    "binary value": (lambda marker: "train_file: !!binary aGk=\n", ": train_file must be str, got b'hi'"),
    "wrong type": (lambda marker: "train_file: x.txt\nbatch_size: [64]\n", ": batch_size must be int"),
    "huge integer": (
        lambda marker: "train_file: x.txt\nseed: " + "9" * 5000 + "\n",
        ": invalid YAML (Exceeds",
    ),
    "not a mapping": (lambda marker: "- train_file\n", ": expected a mapping"),
    "invalid UTF-8": (lambda marker: "train_file: caf\udce9.txt\n", ": cannot read"),
}


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_cli_malformed_yaml_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, tiny_bert, case):
    make, expected = YAML_CASES[case]
    marker = tmp_path / "pwned"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(make(marker).encode("utf-8", "surrogateescape"))
    out = tmp_path / "runs" / "out"
    code = main(
        ["train", str(recipe), "--model_name_or_path", str(tiny_bert), "--output_dir", str(out), *QUIET]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"simcse: error: {recipe}"), err
    assert expected in err, err
    assert not (tmp_path / "runs").exists() and not marker.exists()


TRAIN_FILE_CASES = {
    "train.txt": (b"a sentence\nanother\x00one\n", ":2: contains a NUL byte"),
    "latin1.txt": (b"\xef\xbb\xbfcaf\xc3\xa9\nna\xefve\n", ":2: not valid UTF-8 (byte 0xef)"),
    "pairs.csv": (b"a,b\r\nc,d,e\r\n", ":2: expected 2 columns, found 3"),
    "quote.csv": (b'a,b\n"c,d\ne,f\n', ":2: malformed CSV"),
    "huge.csv": (b"a,b\n" + b"x" * 200_000 + b",y\n", ":2: malformed CSV (field larger than field limit"),
    "five.tsv": (b"a\tb\tc\td\te\n", ":1: expected 1 to 4 columns, found 5"),
    "blank.txt": (b"\xef\xbb\xbf\r\n \r\n\t\n", ": no sentences"),
}


@pytest.mark.parametrize("name", list(TRAIN_FILE_CASES))
def test_cli_malformed_train_file_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, tiny_bert, name):
    content, expected = TRAIN_FILE_CASES[name]
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "runs" / "out"
    code = main(["train", "--train_file", str(path), "--model_name_or_path", str(tiny_bert), "--output_dir", str(out),
                 *QUIET])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"simcse: error: {path}{expected}"), err
    assert not (tmp_path / "runs").exists()


def test_cli_python_tag_in_a_subprocess_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"train_file: x.txt\nextra: {{k: {_python_tag(marker)}}}\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "simcse.cli", "train", str(recipe), "--output_dir", str(out), *QUIET],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"simcse: error: {recipe}:2: invalid YAML") and proc.stderr.count("\n") == 1
    assert not marker.exists() and not out.exists()
