"""What a run measures and keeps: dev evaluation and checkpoint selection, the final test tables,
resumable checkpoints, logging and experiment trackers, the model card's facts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simcse.core.errors import ConfigError, shorten
from simcse.core.options import must_be_non_negative, must_be_positive, option

GROUP = "evaluation, checkpoints, logging"
BEST_METRICS = ("stsb_spearman", "sickr_spearman", "avg_sts", "dev_spearman")
FINAL_EVALS = ("none", "sts", "transfer", "full")
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")  # see simcse.training.trackers
REPORT_TO_HELP = (
    f"experiment trackers besides metrics.jsonl: a list or comma string of {', '.join(TRACKERS)}; auto = "
    "tensorboard when installed and the tensorboard option is true (auto,wandb adds wandb); none = "
    "metrics.jsonl only. A named tracker must be installed. Env: WANDB_PROJECT, WANDB_MODE; "
    "MLFLOW_TRACKING_URI (default OUTPUT/mlruns), MLFLOW_EXPERIMENT_NAME; TRACKIO_DIR, TRACKIO_PROJECT"
)


def tracker_names(value: Any) -> list[str]:
    """``report_to`` from YAML (a list, or a comma string) or a flag (a comma string); ``""`` is none."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ConfigError(
            f"report_to must be a list of tracker names or a comma string, got {shorten(repr(value), 80)}"
        )
    return list(dict.fromkeys(item.strip().lower() for item in items if item.strip()))


@dataclass
class EvaluationOptions:
    """The evaluation group of :class:`~simcse.training.config.TrainConfig` (dev evaluation, checkpoints,
    logging, trackers, the model card); each field's help line documents it."""

    output_dir: str = option("runs/simcse", "where the model, checkpoints and logs go", GROUP)
    overwrite_output_dir: bool = option(False, "replace a non-empty output_dir", GROUP)
    dev_eval: bool = option(
        True, "STS-B / SICK-R dev evaluation for checkpoint selection (needs the SentEval data)", GROUP
    )
    eval_steps: int = option(250, "dev evaluation every N steps; 0 = only at the end", GROUP)
    eval_at_end: bool = option(
        False,
        "also evaluate the last step's model when it is not a multiple of eval_steps (the original "
        "does not, so its best model is one of the eval_steps ones)",
        GROUP,
    )
    eval_before_training: bool = option(True, "also score the untrained model, to report the gain", GROUP)
    geometry_steps: int = option(
        0,
        "every N steps (and before the first), log alignment and uniformity of STS-B dev into metrics.jsonl "
        "(kind geometry; the paper's Figure 2 used 10; simcse plot geometry draws them); 0 = never",
        GROUP,
    )
    dev_file: str = option(
        "",
        "your dev set for checkpoint selection instead of STS-B/SICK-R dev: a .csv/.tsv of sentence1, "
        "sentence2, score (header optional, any score range) or a directory of STS.input.X.txt/STS.gs.X.txt",
        GROUP,
    )
    metric_for_best_model: str = option(
        "auto",
        "auto (dev_spearman with dev_file, else stsb_spearman) | " + " | ".join(BEST_METRICS),
        GROUP,
        choices=("auto", *BEST_METRICS),
    )
    eval_batch_size: int = option(128, "sentences per batch in evaluation", GROUP)
    final_eval: str = option(
        "sts",
        "test-set evaluation of the best model at the end: " + " | ".join(FINAL_EVALS),
        GROUP,
        choices=FINAL_EVALS,
    )
    final_eval_baseline: bool = option(
        False, "also evaluate the untrained model (same pooler) for comparison", GROUP
    )
    save_steps: int = option(250, "resumable checkpoint every N steps; 0 = none", GROUP)
    save_total_limit: int = option(2, "checkpoints kept", GROUP)
    logging_steps: int = option(10, "a metrics.jsonl record every N steps", GROUP)
    report_to: list[str] = option(["auto"], REPORT_TO_HELP, GROUP, coerce=tracker_names)
    tensorboard: bool = option(
        True,
        "with report_to auto: TensorBoard logs when the tensorboard package is installed; false leaves "
        "them out (and report_to tensorboard then is an error)",
        GROUP,
    )
    progress_bar: bool = option(True, "a progress bar on the terminal", GROUP)
    license: str = option(
        "",
        "the model card's license (e.g. apache-2.0); empty = the starting model's card's, if it names one",
        GROUP,
    )
    language: str = option(
        "",
        "the model card's language (e.g. en); empty = the starting model's card's, else en for the paper's data",
        GROUP,
    )

    @property
    def best_metric(self) -> str:
        """The dev metric that picks the best model (``auto`` resolved)."""
        if self.metric_for_best_model != "auto":
            return self.metric_for_best_model
        return "dev_spearman" if self.dev_file else "stsb_spearman"


def problems(c: Any) -> list[str]:
    """The evaluation options' problems: the best-model metric against ``dev_file``, counts that must be
    positive or non-negative, ``save_total_limit`` and ``report_to`` (:func:`report_to_problems`)."""
    found = []
    if c.dev_file and c.metric_for_best_model not in ("auto", "dev_spearman"):
        found.append(
            f"metric_for_best_model {c.metric_for_best_model} scores the STS-B/SICK-R dev sets; with "
            "dev_file use dev_spearman (or auto)"
        )
    if not c.dev_file and c.metric_for_best_model == "dev_spearman":
        found.append("metric_for_best_model dev_spearman needs dev_file (your dev set)")
    found += must_be_positive(c, "eval_batch_size")
    found += must_be_non_negative(c, "eval_steps", "geometry_steps", "save_steps", "logging_steps")
    if c.save_total_limit < 1:
        found.append(f"save_total_limit must be at least 1, got {c.save_total_limit}")
    return found + report_to_problems(c.report_to, c.tensorboard)


def report_to_problems(names: list[str], tensorboard: bool) -> list[str]:
    """Unknown names, contradictions, and trackers whose package is not installed (checked without
    importing it: :func:`simcse.training.config.tracker_packages.missing_package`)."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return [f"report_to must be a list of tracker names, got {shorten(repr(names), 80)}"]
    unknown = [name for name in names if name not in (*TRACKERS, "auto", "none")]
    if unknown:
        return [
            f"report_to: unknown tracker {shorten(', '.join(map(repr, unknown)), 80)}; choose from "
            f"{', '.join(TRACKERS)}, auto or none"
        ]
    if "none" in names and len(names) > 1:
        return ["report_to none means no tracker; do not combine it with others"]
    problems = []
    if "tensorboard" in names and not tensorboard:
        problems.append(
            "report_to names tensorboard but tensorboard is false; set tensorboard true or drop it"
        )
    from simcse.training.config.tracker_packages import missing_package

    return problems + [p for p in map(missing_package, names) if p]
