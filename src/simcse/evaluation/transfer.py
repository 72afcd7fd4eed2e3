"""SentEval's transfer tasks (MR, CR, SUBJ, MPQA, SST2, TREC, MRPC): SentEval's own classifier by default
(``classifier="senteval"``, :mod:`simcse.evaluation.senteval_classifier`, the paper's protocol), or a
deterministic L-BFGS fit of the same objective (``classifier="lbfgs"``, :mod:`simcse.evaluation.classifier`).

Loaders and protocol follow facebookresearch/SentEval (senteval/binary.py, sst.py, trec.py, mrpc.py,
tools/validation.py) as SimCSE's evaluation.py runs it, on the data tree of SimCSE's senteval.tar
(``<senteval_dir>`` = ``.../SentEval/data/downstream``):

- MR, CR, SUBJ, MPQA: InnerKFoldClassifier. The samples (positive file first, label 1; for SUBJ the
  objective file is label 1) are sorted by (token count, label) and split by an outer
  ``StratifiedKFold(kfold, shuffle=True)``. On each outer training part an inner ``StratifiedKFold`` of
  the same kind picks the L2 penalty; the model is then refit on the whole outer training part with
  that penalty. ``acc`` is the mean outer test accuracy, ``devacc`` the mean of the best inner scores.
- SST2: SplitClassifier. The penalty is chosen on dev; both dev and test accuracy are reported.
- TREC (6 coarse classes) and MRPC: KFoldClassifier. The penalty is chosen by a ``StratifiedKFold`` over the
  training set; the model is refit on the whole training set and scored on the test set. MRPC
  also reports the binary F1 of the paraphrase class.
- kfold is 10 in mode "test" and 5 in modes "dev" and "fasttest" (SimCSE's evaluation.py). Accuracies are
  x100 and rounded to 2 decimals at the same points as in SentEval. Penalty scores are rounded before the
  argmax, so ties go to the smallest penalty.
- The penalty grid is SentEval's grid for ``usepytorch=True``: weight decay in ``[10**t for t in range(-5, -1)]``.

Data pitfalls handled as SentEval handles them: MR/CR/SUBJ/MPQA are read as Latin-1 with
``str.splitlines``, and the ``cat -v`` escapes (``M-m``) in MR and SUBJ are kept. The empty lines in CR
(4) and MPQA (3) are kept as empty sentences; they are part of SentEval's counts. TREC is read as Latin-1;
its train file has one non-UTF-8 byte. MRPC is split on tabs without csv quoting, so its stray double
quotes are kept, and the header line, which carries the UTF-8 BOM, is dropped. Sentences are
whitespace-split and re-joined with single spaces, which is what SimCSE's batcher embeds. TREC's ` and '
characters are deleted by SentEval's download script, not by its loader; neither does this loader delete
them, so the result depends on which copy of ``train_5500.label`` the tree holds.

Differences of ``classifier="lbfgs"`` from SentEval (``senteval`` has none but float rounding)
--------------------------------------------------------------------------------------------------
- Optimizer. SentEval (``usepytorch=True``, ``nhid=0``) trains ``nn.Linear(dim, n_classes)`` with
  mini-batch Adam (mode "test": batch 64, epoch_size 4, tenacity 5) or RMSprop (modes "dev"/"fasttest":
  batch 128, epoch_size 2, tenacity 3). It starts from a seeded random init and early-stops on
  validation accuracy, in float32. Here full-batch L-BFGS (scipy) minimises the same objective to
  convergence in float64. It runs in a basis preconditioned by the feature second-moment matrix and starts
  from zero, or from the fit with the next stronger penalty. The result is deterministic and does not
  depend on the mode's optimizer settings: mode changes kfold only.
- Objective. It is the same objective: mean softmax cross-entropy over ``n_classes`` outputs (two for
  binary tasks) plus ``l2reg / 2 * ||W, b||^2``. PyTorch's weight decay also penalises the bias, and so
  does this code. SentEval sets ``loss_fn.size_average = False`` after construction; since PyTorch 0.4.1 that
  has no effect, so the loss is a mean. sklearn's ``LogisticRegression`` is not used because it cannot
  express this objective. It leaves the intercept unpenalised, and for two classes it fits a single weight
  vector ``w = w1 - w0``. The matching ``C`` is ``1 / (l2reg * n_train)`` for a K-column softmax, and
  ``2 / (l2reg * n_train)`` for sklearn's binary form, intercept penalty aside.
- Validation data. SentEval's early stopping uses data the fit does not train on. In the inner and
  k-fold scans that is the very fold being scored. In the final InnerKFold and KFold refits it is a
  random 5% of the training part, so those refits train on 95%. In SST2 it is the dev set. Here every fit
  trains on its whole training part, and no held-out data influences the weights. SST2's final model is
  the penalty-selection fit, because a refit with the same penalty would be identical.
- Seed. SentEval's InnerKFoldClassifier hard-codes ``random_state=1111`` for its outer and inner folds and
  ignores ``seed``. Here ``seed`` sets those folds too, so the default 1111 gives SentEval's folds. The
  seed has no other role because nothing here is random. Fold assignment is sklearn's
  ``StratifiedKFold`` of the installed version, as in SentEval.
- Batching. SentEval embeds each split in sorted batches. Here ``embed`` is called once per task, with
  the sentences in ``transfer_sentences`` order. For an encoder that masks padding the embeddings are
  the same up to float rounding. The sort order, which decides fold assignment, is still reproduced.
- Validation of input. SentEval drops MRPC's first line unchecked and either crashes on malformed lines or
  accepts them silently. Here the MRPC header is checked, every malformed line raises ``DataError``
  naming the file and line number, and so does a file with no examples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score
from threadpoolctl import threadpool_limits

from simcse.core.errors import ConfigError, DataError
from simcse.evaluation.classifier import inner_kfold_protocol, kfold_protocol, split_protocol

TRANSFER_TASKS = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
KFOLD_BY_MODE = {"test": 10, "dev": 5, "fasttest": 5}

# task -> (folder, file of label 1, file of label 0), from SentEval's binary.py
_BINARY_FILES = {
    "MR": ("MR", "rt-polarity.pos", "rt-polarity.neg"),
    "CR": ("CR", "custrev.pos", "custrev.neg"),
    "SUBJ": ("SUBJ", "subj.objective", "subj.subjective"),
    "MPQA": ("MPQA", "mpqa.pos", "mpqa.neg"),
}
_TREC_CLASSES = {"ABBR": 0, "DESC": 1, "ENTY": 2, "HUM": 3, "LOC": 4, "NUM": 5}
_N_CLASSES = {"MR": 2, "CR": 2, "SUBJ": 2, "MPQA": 2, "SST2": 2, "TREC": 6, "MRPC": 2}
_MRPC_HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"


@dataclass
class TransferData:
    """One transfer task's text, in file order.

    ``splits`` maps a split name to its examples. Each example is a ``(sentence, label)`` tuple, or
    ``(sentence_1, sentence_2, label)`` for MRPC. The splits are "all" for MR, CR, SUBJ and MPQA;
    "train", "dev" and "test" for SST2; "train" and "test" for TREC and MRPC.
    """

    name: str
    splits: dict[str, list]


def load_transfer_task(name: str, senteval_dir: str | Path) -> TransferData:
    """Load one task from SentEval's ``data/downstream`` folder, parsing its files the way SentEval does."""
    if name not in TRANSFER_TASKS:
        raise ConfigError(f"unknown transfer task {name!r}; expected one of {', '.join(TRANSFER_TASKS)}")
    root = Path(senteval_dir)
    if name in _BINARY_FILES:
        folder, file_1, file_0 = _BINARY_FILES[name]
        task_dir = _task_dir(root, folder)
        examples = [(s, 1) for s in _read_sentence_file(task_dir / file_1)]
        examples += [(s, 0) for s in _read_sentence_file(task_dir / file_0)]
        return TransferData(name, {"all": examples})
    if name == "SST2":
        task_dir = _task_dir(root, "SST/binary")
        splits = {
            split: _read_sst2_file(task_dir / f"sentiment-{split}") for split in ("train", "dev", "test")
        }
        return TransferData(name, splits)
    if name == "TREC":
        task_dir = _task_dir(root, "TREC")
        splits = {"train": _read_trec_file(task_dir / "train_5500.label")}
        splits["test"] = _read_trec_file(task_dir / "TREC_10.label")
        return TransferData(name, splits)
    task_dir = _task_dir(root, "MRPC")
    splits = {"train": _read_mrpc_file(task_dir / "msr_paraphrase_train.txt")}
    splits["test"] = _read_mrpc_file(task_dir / "msr_paraphrase_test.txt")
    return TransferData(name, splits)


def transfer_sentences(data: TransferData) -> list[str]:
    """Every sentence the task embeds, in the order ``evaluate_transfer_task`` passes them to ``embed``.

    Split by split. Within a split, MRPC lists all first sentences and then all second sentences.
    """
    n_columns = _n_text_columns(data.name)
    sentences: list[str] = []
    for examples in data.splits.values():
        for column in range(n_columns):
            sentences.extend(example[column] for example in examples)
    return sentences


CLASSIFIERS = ("senteval", "lbfgs")


def evaluate_transfer_task(
    data: TransferData,
    embed: Callable[[list[str]], np.ndarray],
    mode: str = "test",
    seed: int = 1111,
    classifier: str = "senteval",
    device: str | None = None,
) -> dict:
    """Run SentEval's protocol for one task; ``embed`` is called once, with ``transfer_sentences(data)``.
    ``classifier``: ``senteval`` (SentEval's mini-batch classifier with SimCSE's settings for ``mode``, on
    ``device``, default the GPU when there is one) or ``lbfgs`` (deterministic, mode changes kfold only).

    Returns ``acc`` and ``devacc`` (x100, 2 decimals), ``n`` (examples ``acc`` is measured on), SentEval's
    ``ndev``/``ntest``, the chosen penalty ``l2reg`` (one per outer fold for MR/CR/SUBJ/MPQA), and for MRPC
    ``f1`` (x100, 2 decimals).
    """
    if mode not in KFOLD_BY_MODE:
        raise ConfigError(f"unknown evaluation mode {mode!r}; expected one of {', '.join(KFOLD_BY_MODE)}")
    if data.name not in TRANSFER_TASKS:
        raise ConfigError(f"unknown transfer task {data.name!r}; expected one of {', '.join(TRANSFER_TASKS)}")
    if classifier not in CLASSIFIERS:
        raise ConfigError(f"unknown classifier {classifier!r}; expected one of {', '.join(CLASSIFIERS)}")
    features = _task_features(data, embed)
    if classifier == "senteval":
        return {**_run_senteval_protocol(data.name, features, mode, seed, device), "classifier": classifier}
    # The fits are thousands of small products; BLAS threads only add overhead and suffer badly when the
    # cores are shared (measured: 1 thread 2-4x faster than 2 on MR/CR, within 15% on SST2).
    with threadpool_limits(limits=1, user_api="blas"):
        return {**_run_protocol(data.name, features, KFOLD_BY_MODE[mode], seed), "classifier": classifier}


def _run_senteval_protocol(
    name: str, features: dict[str, tuple[np.ndarray, np.ndarray]], mode: str, seed: int, device: str | None
) -> dict:
    from simcse.evaluation import senteval_classifier as sc

    n_classes, settings, where = _N_CLASSES[name], sc.SETTINGS[mode], sc.resolve_device(device)
    with sc.one_cpu_thread(where):
        return _senteval_protocol(name, features, n_classes, settings, seed, where)


def _senteval_protocol(name: str, features: dict, n_classes: int, settings, seed: int, where) -> dict:
    from simcse.evaluation import senteval_classifier as sc

    if name in _BINARY_FILES:
        result = sc.inner_kfold_protocol(*features["all"], n_classes, settings, seed, where)
    elif name == "SST2":
        result = sc.split_protocol(
            features["train"], features["dev"], features["test"], n_classes, settings, seed, where
        )
    else:
        result, predicted = sc.kfold_protocol(
            features["train"], features["test"], n_classes, settings, seed, where
        )
        if name == "MRPC":
            result["f1"] = round(100 * float(f1_score(features["test"][1], predicted)), 2)
    return result


def _run_protocol(
    name: str, features: dict[str, tuple[np.ndarray, np.ndarray]], kfold: int, seed: int
) -> dict:
    n_classes = _N_CLASSES[name]
    if name in _BINARY_FILES:
        return inner_kfold_protocol(*features["all"], n_classes, kfold, seed)
    if name == "SST2":
        return split_protocol(features["train"], features["dev"], features["test"], n_classes)
    result, predicted = kfold_protocol(features["train"], features["test"], n_classes, kfold, seed)
    if name == "MRPC":
        result["f1"] = round(100 * float(f1_score(features["test"][1], predicted)), 2)
    return result


# ---------------------------------------------------------------------------------------------- loading


def _task_dir(root: Path, folder: str) -> Path:
    task_dir = root / folder
    if not task_dir.is_dir():
        raise DataError(task_dir, "task directory not found; expected SentEval's data/downstream tree")
    return task_dir


def _read_text(path: Path, encoding: str) -> str:
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(path, f"cannot read file: {err.strerror}") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(
            path, f"not valid {encoding}: byte {raw[err.start]:#04x} ({err.reason})", line
        ) from None


def _lines(text: str) -> list[str]:
    """The lines ``for line in open(path)`` yields (universal newlines), without their line ends."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _join_tokens(text: str) -> str:
    return " ".join(text.split())


def _require_examples(path: Path, examples: list) -> list:
    if not examples:
        raise DataError(path, "no examples in file")
    return examples


def _read_sentence_file(path: Path) -> list[str]:
    # binary.py: f.read().splitlines() of a Latin-1 read; empty lines stay as (empty) samples.
    lines = _read_text(path, "latin-1").splitlines()
    return _require_examples(path, [_join_tokens(line) for line in lines])


def _parse_label(text: str, allowed: range, path: Path, line: int) -> int:
    try:
        label = int(text)
    except ValueError:
        label = None
    if label not in allowed:
        raise DataError(
            path, f"bad label {text!r}; expected an integer in [{allowed[0]}, {allowed[-1]}]", line
        )
    return label


def _read_sst2_file(path: Path) -> list[tuple[str, int]]:
    # sst.py (nclasses=2): utf-8, line.strip().split('\t') -> sentence, int label
    examples = []
    for number, line in enumerate(_lines(_read_text(path, "utf-8")), start=1):
        fields = line.strip().split("\t")
        if len(fields) != 2:
            raise DataError(
                path, f"expected 2 tab-separated fields (sentence, label), found {len(fields)}", number
            )
        examples.append((_join_tokens(fields[0]), _parse_label(fields[1], range(2), path, number)))
    return _require_examples(path, examples)


def _read_trec_file(path: Path) -> list[tuple[str, int]]:
    # trec.py: latin-1, "COARSE:fine question ..." -> question after the first space, coarse label
    examples = []
    for number, line in enumerate(_lines(_read_text(path, "latin-1")), start=1):
        coarse, colon, rest = line.strip().partition(":")
        if not colon or coarse not in _TREC_CLASSES:
            raise DataError(
                path, f"expected 'COARSE:fine question' with COARSE in {', '.join(_TREC_CLASSES)}", number
            )
        _fine, space, question = rest.partition(" ")
        if not space:
            raise DataError(path, "no question after the 'COARSE:fine' label", number)
        examples.append((_join_tokens(question), _TREC_CLASSES[coarse]))
    return _require_examples(path, examples)


def _read_mrpc_file(path: Path) -> list[tuple[str, str, int]]:
    # mrpc.py: utf-8 (the BOM stays on the header, which is dropped), line.strip().split('\t') without csv
    # quoting; fields 0, 3, 4 are label, sentence 1, sentence 2.
    lines = _lines(_read_text(path, "utf-8"))
    if not lines or lines[0].lstrip("\ufeff").strip() != _MRPC_HEADER:
        raise DataError(path, f"expected the header line {_MRPC_HEADER!r}", 1)
    examples = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.strip().split("\t")
        if len(fields) != 5:
            raise DataError(
                path,
                f"expected 5 tab-separated fields (Quality, 2 ids, 2 strings), found {len(fields)}",
                number,
            )
        label = _parse_label(fields[0], range(2), path, number)
        examples.append((_join_tokens(fields[3]), _join_tokens(fields[4]), label))
    return _require_examples(path, examples)


# ------------------------------------------------------------------------------------------- features


def _n_text_columns(name: str) -> int:
    return 2 if name == "MRPC" else 1


def _task_features(
    data: TransferData, embed: Callable[[list[str]], np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split: float64 features and int labels, both in SentEval's sorted order."""
    sentences = transfer_sentences(data)
    embeddings = np.asarray(embed(sentences))
    if embeddings.ndim != 2 or embeddings.shape[0] != len(sentences):
        raise ValueError(
            f"embed returned an array of shape {embeddings.shape} for {len(sentences)} sentences"
        )
    n_columns = _n_text_columns(data.name)
    features = {}
    start = 0
    for split, examples in data.splits.items():
        n = len(examples)
        columns = [embeddings[start + c * n : start + (c + 1) * n] for c in range(n_columns)]
        start += n_columns * n
        # mrpc.py: np.c_[np.abs(A - B), A * B], i.e. only |u - v| and u * v, without u and v themselves
        x = columns[0] if n_columns == 1 else np.c_[np.abs(columns[0] - columns[1]), columns[0] * columns[1]]
        y = np.array([example[-1] for example in examples], dtype=np.int64)
        order = _senteval_order(examples)
        features[split] = (np.ascontiguousarray(x[order], dtype=np.float64), y[order])
    return features


def _senteval_order(examples: list[tuple]) -> np.ndarray:
    """SentEval's sort "to reduce padding": by token count of each sentence, then label; stable.

    The folds are drawn on this order, so it decides which sample lands in which fold.
    """

    def key(index: int) -> tuple[int, ...]:
        example = examples[index]
        return (*(len(sentence.split()) for sentence in example[:-1]), example[-1])

    return np.array(sorted(range(len(examples)), key=key), dtype=np.int64)
