"""The end of a run: the best model (or, without dev evaluation, the last) moved to the top of the output
directory, its test-set evaluation, its ``simcse.json`` facts and its model card."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from simcse.core.version import __version__
from simcse.data.sentence_files import TrainingData
from simcse.training.config import TrainConfig
from simcse.training.metrics import MetricsLog, format_scores
from simcse.training.run_dir import BEST_DIR, FINAL_DIR, record_written, replace_with_copy


def run_facts(config: TrainConfig, data: TrainingData, views: int, state: Any, dev: dict | None) -> dict:
    """What ``simcse.json`` records about the training of a saved model."""
    return {
        "objective": "unsup" if data.columns == 1 else "sup",
        "views": views,
        "temperature": config.temperature,
        "hard_negative_weight": config.hard_negative_weight,
        "step": state.global_step,
        "best_step": state.best_step,
        "dev": dev,
        "dev_before_training": state.dev_before,
        "best_metric": config.best_metric,
        "train_file": data.path,
        "train_rows": len(data),
        "training_config": config.to_dict(),
    }


def finish(
    config: TrainConfig, out: Path, encoder: Any, data: TrainingData, views: int, state: Any, log: MetricsLog
) -> tuple[dict | None, dict | None]:
    """Put the best (or, without dev evaluation, the last) model in the output directory and test it.
    Returns (the best model's dev scores, its test results)."""
    from simcse.training.model_card import model_card

    source = out / BEST_DIR
    if source.is_dir():
        dev_best = json.loads((source / "simcse.json").read_text(encoding="utf-8")).get("dev")
    else:  # no dev evaluation: the last step's model, staged inside the run like the best one
        dev_best = None
        source = out / FINAL_DIR
        encoder.save(source, extra=run_facts(config, data, views, state, None))
    record_written(out, [entry.name for entry in source.iterdir()] + ["README.md"])
    for entry in source.iterdir():
        replace_with_copy(entry, out / entry.name)
    if source.name != Path(BEST_DIR).name:
        shutil.rmtree(source)
    test = evaluate_on_test(config, out) if config.final_eval != "none" else None
    if test is not None:
        log.test_results(state.global_step, test)
    meta_path = out / "simcse.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.update(
        {
            "step": state.global_step,
            "best_step": state.best_step,
            "dev": dev_best,
            "test": _brief(test),
            "simcse_version": __version__,
            "finished": True,
        }
    )
    meta_path.write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "README.md").write_text(model_card(meta, test), encoding="utf-8")
    if state.best_step is None:  # dev_eval false: the last step's model
        facts = f"the model after step {state.global_step}; no dev evaluation"
    else:
        facts = f"best dev at step {state.best_step}: {format_scores(dev_best)}"
        if state.dev_before:
            facts += f"; before training: {format_scores(state.dev_before)}"
    print(f"simcse: model saved to {out} ({facts})", file=sys.stderr)
    return dev_best, test


def evaluate_on_test(config: TrainConfig, out: Path) -> dict:
    """The saved model's test-set results (and the untrained model's, with ``final_eval_baseline``),
    written to ``results.json`` and printed as tables."""
    from simcse.evaluation.report import markdown_tables, write_json
    from simcse.evaluation.suite import evaluate
    from simcse.modeling.encoder import Encoder

    baseline = None
    if config.final_eval_baseline:
        baseline_pooler = "cls_before_pooler" if config.pooler == "cls" else config.pooler
        from simcse.training import methods

        # the untrained model under the trained one's pooler options (PromptBERT: its template)
        options = {
            key: value for m in methods.enabled(config) for key, value in m.encoder_options(config).items()
        }
        baseline = evaluate(
            Encoder.load(config.model_name_or_path, baseline_pooler, **options),
            config.final_eval,
            mode="test",
            data_dir=config.data_dir,
            batch_size=config.eval_batch_size,
        )
        baseline["name"] = f"before training ({baseline_pooler})"
    test = evaluate(
        str(out), config.final_eval, mode="test", data_dir=config.data_dir, batch_size=config.eval_batch_size
    )
    test["name"] = out.name
    if baseline is not None:
        test["baseline"] = baseline
    write_json(test, out / "results.json")
    print(markdown_tables([baseline, test] if baseline is not None else [test]))
    return test


def _brief(test: dict | None) -> dict | None:
    if not test:
        return None
    tasks = {
        k: {m: v[m] for m in ("spearman", "pearson", "acc", "f1") if m in v} for k, v in test["tasks"].items()
    }
    return {"mode": test["mode"], "aggregate": test["aggregate"], "tasks": tasks, "avg": test["avg"]}
