"""The README.md written next to a trained model: what it is, how it was trained, how it scores."""

from __future__ import annotations

from typing import Any


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
    lines = [f"## Development set (Spearman x 100; the best model by {metric})", "",
             "| | " + " | ".join(name for _, name in columns) + " |", "|---|" + "---|" * len(columns)]  # fmt: skip
    for label, scores in (("before training", before), ("this model", dev)):
        if scores:
            lines.append(f"| {label} | " + " | ".join(f"{scores.get(k, 0):.2f}" for k, _ in columns) + " |")
    return [*lines, ""]


def model_card(meta: dict[str, Any], test: dict | None) -> str:
    cfg = meta.get("training_config") or {}
    dev, before = meta.get("dev") or {}, meta.get("dev_before_training") or {}
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [simcse, sentence-embeddings, sentence-transformers]",
        "---",
        "",
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
        "",
    ]
    if dev:
        lines += _dev_table(dev, before, cfg, meta.get("best_metric") or cfg.get("metric_for_best_model", ""))
    if test:
        lines += ["## Test sets", "", "STS: Spearman x 100 of cosine similarity, STS12-16 pooled over subsets (\"all\").",
                  "", _scores_table(test), ""]  # fmt: skip
    lines += [
        "## Use",
        "",
        "```python",
        "from simcse import Encoder",
        "model = Encoder.load('PATH')",
        "embeddings = model.encode(['A man is playing a guitar.', 'Someone plays an instrument.'])",
        "",
        "from sentence_transformers import SentenceTransformer  # same embeddings",
        "embeddings = SentenceTransformer('PATH').encode(['A man is playing a guitar.'])",
        "```",
        "",
    ]
    return "\n".join(lines)
