"""Supervised training files derived from the SNLI pairs of the data directory (``train_file: snli:NAME``),
for the paper's supervised-data and hard-negative analyses (Tables 4 and 7).

The data directory has SNLI dev and test in SentEval's format (``senteval/downstream/SNLI/{s1,s2,labels}.
{dev,test}``). From them, in code (no data is committed), into ``DATA/nli/derived/NAME.csv``:

- ``entailment``, ``neutral``, ``contradiction``: (premise, hypothesis) pairs of that label;
- ``all``: every (premise, hypothesis) pair, whatever its label;
- ``triples``: (premise, entailment, contradiction) rows, the rule of ``nli_for_simcse.csv`` and of the data
  directory's ``nli/snli_devtest_triples_for_simcse.csv``: per split, the premise's entailment hypotheses
  zipped with its contradiction hypotheses, in file order;
- ``triples-no-hard-negative``: the same rows without their third column (the "N/A" row of Table 7);
- ``triples-with-neutral``: (premise, entailment, contradiction, neutral) rows, the premise's hypotheses of
  the three labels zipped (Table 7's "contradiction + neutral" row: both are hard negatives).

A file is written once, atomically (a temporary sibling renamed into place), and re-derived when missing.
SNLI dev/test are evaluation sets: models trained on these files must not be evaluated on SNLI.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

from simcse.core.errors import ConfigError, DataError
from simcse.core.files import write_text_atomic

PREFIX = "snli:"
NAMES = (
    "entailment",
    "neutral",
    "contradiction",
    "all",
    "triples",
    "triples-no-hard-negative",
    "triples-with-neutral",
)
LABELS = ("entailment", "neutral", "contradiction")
SPLITS = ("dev", "test")
TRIPLE_WITH_NEUTRAL = ("entailment", "contradiction", "neutral")
HEADERS = {
    "triples": ["sent0", "sent1", "hard_neg"],
    "triples-with-neutral": ["sent0", "sent1", "hard_neg", "hard_neg2"],
}


def is_derived(train_file: str) -> bool:
    """Whether ``train_file`` names an SNLI-derived file (``snli:NAME``)."""
    return train_file.startswith(PREFIX)


def check_name(train_file: str) -> None:
    """Raise ConfigError unless ``train_file``'s NAME is one of :data:`NAMES`."""
    name = train_file[len(PREFIX) :]
    if name not in NAMES:
        raise ConfigError(
            f"train_file {train_file!r}: unknown SNLI-derived file; choose snli: + one of {', '.join(NAMES)}"
        )


def _read_split(snli: Path, split: str) -> list[tuple[str, str, str]]:
    columns = []
    for stem in ("s1", "s2", "labels"):
        path = snli / f"{stem}.{split}"
        try:
            columns.append(path.read_text(encoding="utf-8").splitlines())
        except OSError as e:
            raise DataError(path, f"cannot read the SNLI file ({e.strerror or e})") from None
    if not len(columns[0]) == len(columns[1]) == len(columns[2]):
        raise DataError(snli, f"s1.{split}, s2.{split} and labels.{split} have different numbers of lines")
    rows = []
    for number, (premise, hypothesis, label) in enumerate(zip(*columns), 1):
        label = label.strip()
        if label not in LABELS:
            raise DataError(snli / f"labels.{split}", f"unknown label {label!r}", line=number)
        rows.append((premise.rstrip(), hypothesis.rstrip(), label))
    return rows


def derive_rows(snli: Path, name: str) -> tuple[list[str], list[tuple[str, ...]]]:
    """The header and rows of derived file ``name`` from the SNLI directory ``snli``."""
    out: list[tuple[str, ...]] = []
    for split in SPLITS:
        rows = _read_split(snli, split)
        if name in LABELS:
            out += [(p, h) for p, h, label in rows if label == name]
        elif name == "all":
            out += [(p, h) for p, h, _ in rows]
        else:
            by_premise: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
            for premise, hypothesis, label in rows:
                by_premise[premise][label].append(hypothesis)
            for premise, hypotheses in by_premise.items():
                if name == "triples-with-neutral":
                    out += [(premise, *h) for h in zip(*(hypotheses[k] for k in TRIPLE_WITH_NEUTRAL))]
                    continue
                for entailed, contradicted in zip(hypotheses["entailment"], hypotheses["contradiction"]):
                    out.append(
                        (premise, entailed, contradicted) if name == "triples" else (premise, entailed)
                    )
    header = HEADERS.get(name, ["sent0", "sent1"])
    return header, out


def derived_file(train_file: str, data_dir: Path) -> Path:
    """The path of ``snli:NAME`` in the data directory, derived first when it is not there."""
    check_name(train_file)
    name = train_file[len(PREFIX) :]
    target = data_dir / "nli" / "derived" / f"snli_{name}.csv"
    if target.is_file():
        return target
    snli = data_dir / "senteval" / "downstream" / "SNLI"
    header, rows = derive_rows(snli, name)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(target, buffer.getvalue())
