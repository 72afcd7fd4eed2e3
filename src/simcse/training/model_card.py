"""The README.md written next to a trained model: what it is, how it was trained, how it scores.

The metadata block is built with ``huggingface_hub``'s :class:`ModelCardData` and :class:`EvalResult`, so
that the Hub reads it as it reads its own cards: ``base_model`` (the model page links the fine-tune),
``datasets``, ``license``, ``language`` and a ``model-index`` with the test results (the Hub's evaluation
widget). The body repeats the results as the paper's tables.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from simcse.evaluation.report import STS_COLUMNS, TRANSFER_COLUMNS, task_value
from simcse.modeling.names import DEFAULT_MODEL, EMBEDDED_HUB_ID

EMBEDDED_BASE = EMBEDDED_HUB_ID
SIMCSE_DATASETS = "princeton-nlp/datasets-for-simcse"
PAPER_FILES = ("wiki1m_for_simcse.txt", "nli_for_simcse.csv")
_HUB_ID = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9_.-]*/)?[A-Za-z0-9][A-Za-z0-9_.-]*$"
)  # bert-base-uncased, org/name
# The evaluation sets as Hub datasets with the same sentence pairs (SentEval's release of each is what is
# read; the STS12-16 scores are the "all" setting, pooled over the year's subsets).
STS_DATASETS = {
    "STS12": "mteb/sts12-sts",
    "STS13": "mteb/sts13-sts",
    "STS14": "mteb/sts14-sts",
    "STS15": "mteb/sts15-sts",
    "STS16": "mteb/sts16-sts",
    "STSBenchmark": "mteb/stsbenchmark-sts",
    "SICKRelatedness": "mteb/sickr-sts",
}


def _starting_readme(name: str | None) -> Path | None:
    """The model card of the model training started from: the embedded model's, a local directory's, or a
    hub model's when it is in the Hugging Face cache (nothing is downloaded for the card)."""
    if not name or name == DEFAULT_MODEL:
        from simcse.modeling.model_dir import embedded_model_path

        try:
            return embedded_model_path() / "README.md"
        except Exception:  # the embedded package is not installed: nothing to read
            return None
    local = Path(name).expanduser()
    if local.is_dir():
        return local / "README.md"
    if _HUB_ID.match(name):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "README.md")
        return Path(cached) if isinstance(cached, str) else None
    return None


def _starting_card(name: str | None) -> ModelCardData | None:
    readme = _starting_readme(name)
    if readme is None or not readme.is_file():
        return None
    try:
        return ModelCard.load(readme, ignore_metadata_errors=True).data
    except Exception:  # a README with no or broken metadata tells nothing
        return None


def base_model_id(cfg: dict[str, Any]) -> str | None:
    """The Hub id the model was fine-tuned from: the one given to training, the embedded model's, or the
    ``base_model`` / ``_name_or_path`` a local starting directory records; ``None`` when none is known."""
    name = cfg.get("model_name_or_path")
    if not name or name == DEFAULT_MODEL:
        return EMBEDDED_BASE
    name = str(name)
    if _HUB_ID.match(name) and not Path(name).exists():
        return name
    local = Path(name)
    data = _starting_card(name)
    base = getattr(data, "base_model", None)
    if isinstance(base, str) and _HUB_ID.match(base):
        return base
    config = local / "config.json"
    if config.is_file():
        try:
            origin = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path", "")
        except ValueError:
            origin = ""
        if isinstance(origin, str) and _HUB_ID.match(origin) and not Path(origin).exists():
            return origin
    return None


def _datasets(train_file: str | None) -> list[str] | None:
    if train_file and Path(train_file).name in PAPER_FILES:
        return [SIMCSE_DATASETS]
    return None


def eval_results(test: dict | None) -> list[EvalResult]:
    """The test results as the Hub's ``model-index`` entries: Spearman x 100 for STS, accuracy for the
    transfer tasks."""
    if not test:
        return []
    split = "test" if test.get("mode", "test") == "test" else "validation"
    mode = test.get("mode", "test")
    families = [  # columns, metric, task type and name, dataset id, dataset name, metric type and name
        (
            STS_COLUMNS,
            "spearman",
            "sentence-similarity",
            "Semantic Textual Similarity",
            STS_DATASETS.get,
            "{} (SentEval release)",
            "spearman",
            "Spearman correlation of cosine similarity x 100",
        ),
        (
            TRANSFER_COLUMNS,
            "acc",
            "text-classification",
            "SentEval transfer",
            "senteval/{}".format,
            "{} (SentEval)",
            "accuracy",
            f"accuracy ({mode} mode)",
        ),
    ]
    results = []
    for columns, metric, task_type, task_name, dataset, dataset_name, metric_type, metric_name in families:
        for task, label in columns:
            value = task_value(test, task, metric)
            if value is not None:
                results.append(
                    EvalResult(
                        task_type=task_type,
                        task_name=task_name,
                        dataset_type=dataset(task),
                        dataset_name=dataset_name.format(label),
                        dataset_split=split,
                        metric_type=metric_type,
                        metric_name=metric_name,
                        metric_value=round(float(value), 2),
                    )
                )
    return results


def card_data(meta: dict[str, Any], test: dict | None) -> ModelCardData:
    """The model card's metadata (huggingface_hub's ``ModelCardData``) from a saved model's ``simcse.json``
    facts (``meta``) and its test results: base model, data sets, language, license, tags and evaluation
    results."""
    cfg = meta.get("training_config") or {}
    results = eval_results(test)
    base = base_model_id(cfg)
    start = _starting_card(cfg.get("model_name_or_path"))
    language = (
        cfg.get("language")
        or getattr(start, "language", None)
        or ("en" if _datasets(meta.get("train_file")) else None)
    )
    st = meta.get("pooler") != "prompt"  # sentence-transformers cannot load a prompt (PromptBERT) model
    return ModelCardData(
        base_model=base,
        datasets=_datasets(meta.get("train_file")),
        language=language,
        license=cfg.get("license") or getattr(start, "license", None) or None,
        library_name="sentence-transformers" if st else None,
        pipeline_tag="sentence-similarity",
        tags=["simcse", "sentence-embeddings", *(["sentence-transformers"] * st), "sentence-similarity"],
        model_name=Path(cfg.get("output_dir") or "simcse-model").name,
        eval_results=results or None,
    )


def _scores_table(test: dict) -> str:
    from simcse.evaluation.report import markdown_tables

    rows = [test["baseline"]] if test.get("baseline") else []
    return markdown_tables([*rows, {**test, "name": "this model"}])


def _dev_table(dev: dict, before: dict, cfg: dict, metric: str) -> list[str]:
    """The dev scores that chose the checkpoint: STS-B and SICK-R dev, or the user's ``dev_file``."""
    if "dev_spearman" in dev:
        columns = [("dev_spearman", f"`{cfg.get('dev_file')}`")]
    else:
        columns = [("stsb_spearman", "STS-B dev"), ("sickr_spearman", "SICK-R dev")]
    lines = [
        f"## Development set (Spearman x 100; the best model by {metric})",
        "",
        "| | " + " | ".join(name for _, name in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for label, scores in (("before training", before), ("this model", dev)):
        if scores:
            lines.append(f"| {label} | " + " | ".join(f"{scores.get(k, 0):.2f}" for k, _ in columns) + " |")
    return [*lines, ""]


def _body(meta: dict[str, Any], test: dict | None) -> str:
    cfg = meta.get("training_config") or {}
    dev, before = meta.get("dev") or {}, meta.get("dev_before_training") or {}
    lines = [
        f"# SimCSE model ({meta.get('objective', '?')})",
        "",
        f"Trained with simcse {meta.get('simcse_version', '')} from "
        f"`{cfg.get('model_name_or_path') or meta.get('source', '')}` on `{meta.get('train_file', '?')}` "
        f"({meta.get('train_rows', '?')} rows).",
        "",
        "| setting | value |",
        "|---|---|",
        f"| objective | {meta.get('objective')} ({meta.get('views')} views per row) |",
        f"| pooler | {meta.get('pooler')}{' + MLP' if meta.get('mlp') else ''} |",
        f"| MLP in training only | {cfg.get('mlp_only_train')} |",
        f"| temperature | {meta.get('temperature')} |",
        f"| batch size | {cfg.get('batch_size')} |",
        f"| learning rate | {cfg.get('learning_rate')} |",
        f"| max sequence length (training) | {cfg.get('max_seq_len')} |",
        f"| steps | {meta.get('step')} (best dev at step {meta.get('best_step')}) |",
        *_prompt_rows(meta),
        "",
    ]
    if dev:
        lines += _dev_table(dev, before, cfg, meta.get("best_metric") or cfg.get("metric_for_best_model", ""))
    if test:
        lines += [
            "## Test sets",
            "",
            'STS: Spearman x 100 of cosine similarity, STS12-16 pooled over subsets ("all").',
            "",
            _scores_table(test),
            "",
        ]
    lines += [
        "## Use",
        "",
        "```python",
        "from simcse import Encoder",
        "model = Encoder.load('PATH')",
        "embeddings = model.encode(['A man is playing a guitar.', 'Someone plays an instrument.'])",
    ]
    if meta.get("pooler") != "prompt":
        lines += [
            "",
            "from sentence_transformers import SentenceTransformer  # same embeddings",
            "embeddings = SentenceTransformer('PATH').encode(['A man is playing a guitar.'])",
        ]
    lines += ["```", ""]
    return "\n".join(lines)


def _prompt_rows(meta: dict[str, Any]) -> list[str]:
    """PromptBERT's template (the first encodes) and denoising, for a prompt model."""
    if meta.get("pooler") != "prompt":
        return []
    templates = " / ".join(f"`{t}`" for t in meta.get("prompt_template") or [])
    return [
        f"| prompt templates (the first encodes) | {templates.replace('|', '&#124;')} |",
        f"| template denoising | {meta.get('prompt_denoise')} |",
    ]


def model_card(meta: dict[str, Any], test: dict | None) -> str:
    """The card's text: the ``huggingface_hub`` metadata block, then the tables."""
    data = card_data(meta, test)
    return f"---\n{data.to_yaml()}\n---\n\n{_body(meta, test)}"
