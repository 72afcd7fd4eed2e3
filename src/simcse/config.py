"""TrainConfig: every training option, its default, YAML + flag overrides, and validation up front.

A recipe is a YAML file of ``key: value`` pairs; every key is also a command-line flag
(``--key value``, ``--key=value``; ``--flag`` alone sets a boolean). Unknown keys and invalid combinations
are rejected before anything is written.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simcse.errors import ConfigError, shorten
from simcse.safe_yaml import check_yaml_size, read_yaml, safe_load_yaml

POOLERS = (
    "cls",
    "cls_before_pooler",
    "avg",
    "avg_top2",
    "avg_first_last",
    "avg_first_last_emb",
    "prompt",
)  # see simcse.modeling.pooling (prompt: simcse.modeling.prompt)
DEFAULT_MODEL = "default"  # the embedded model's name wherever a model is accepted (CLI and library)
OBJECTIVES = ("auto", "unsup", "sup")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULERS = ("linear", "constant")
BEST_METRICS = ("stsb_spearman", "sickr_spearman", "avg_sts", "dev_spearman")
FINAL_EVALS = ("none", "sts", "transfer", "full")
PACKED = ("auto", "on", "off")
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")  # see simcse.training.trackers


def option(default: Any, help: str, group: str) -> Any:
    """A config field: its default, the help line that ``simcse train --help`` prints, and its group."""
    return field(default=default, metadata={"help": help, "group": group})


REPORT_TO_HELP = (
    f"experiment trackers besides metrics.jsonl: a list or comma string of {', '.join(TRACKERS)}; auto = "
    "tensorboard when installed and the tensorboard option is true (auto,wandb adds wandb); none = "
    "metrics.jsonl only. A named tracker must be installed. Env: WANDB_PROJECT, WANDB_MODE; "
    "MLFLOW_TRACKING_URI (default OUTPUT/mlruns), MLFLOW_EXPERIMENT_NAME; TRACKIO_DIR, TRACKIO_PROJECT"
)
MODEL, DATA, OBJECTIVE, OPTIM, EVAL, PERF = (
    "model", "data", "objective", "optimisation", "evaluation, checkpoints, logging", "performance switches",
)  # fmt: skip


@dataclass
class TrainConfig:
    """Every training option. ``validate()`` checks the options alone (all problems reported together);
    what depends on the machine and the processes (device, world size, compile backend) is checked when a
    run starts (:func:`simcse.training.setup.resolve`)."""

    model_name_or_path: str | None = option(
        None, "HF id or directory; none = the embedded all-MiniLM-L6-v2", MODEL
    )
    pooler: str = option("cls", " | ".join(POOLERS), MODEL)
    mlp_only_train: bool = option(
        False,
        "train with the MLP (pooler cls or prompt), encode without it (the paper's unsup setting)",
        MODEL,
    )
    dropout: float | None = option(
        None,
        "dropout rate of every dropout layer of the encoder (hidden and attention) in training; none = the "
        "checkpoint's own (0.1 for BERT); the paper's Table 3 varies it",
        MODEL,
    )

    train_file: str = option(
        "",
        ".txt (unsup) or .csv/.tsv (sup); relative paths also looked up in data_dir; wiki1m / nli: the paper's files; "
        "snli:entailment|neutral|contradiction|all|triples|triples-no-hard-negative|triples-with-neutral: derived from the data dir's SNLI",
        DATA,
    )
    data_dir: str | None = option(None, "default: $SIMCSE_DATA_DIR, then ~/.cache/simcse/data", DATA)
    max_seq_len: int = option(32, "tokens per sentence in training (longer ones are truncated)", DATA)
    max_train_samples: int = option(0, "use only the first N rows; 0 = all", DATA)
    augment: str = option(
        "",
        "unsup: the positive view changed by crop:R | word_deletion:R | delete_one_word | synonym:R | mlm:R (joined with "
        "+; dropout still applies); empty = dropout alone (the paper's Table 1)",
        DATA,
    )
    augment_mlm_model: str = option(
        "", "mlm:R's masked-language model; empty = model_name_or_path (with its pretrained MLM head)", DATA
    )
    augment_thesaurus: str = option(
        "", "synonym:R's thesaurus: a file of a word and its synonyms per line; empty = NLTK's WordNet", DATA
    )
    shuffle: bool = option(True, "a seeded permutation of the rows every epoch", DATA)

    objective: str = option("auto", "auto (from the number of columns) | unsup | sup", OBJECTIVE)
    temperature: float = option(0.05, "tau: logits are similarity / tau", OBJECTIVE)
    positive: str = option(
        "self",
        "unsup: self (the sentence again: SimCSE) | next_sentence | next_3_sentences (one of the next three, "
        "chosen per row): the paper's Table 2 objectives; consecutive lines of the file are neighbours",
        OBJECTIVE,
    )
    dropout_mask: str = option(
        "independent",
        "unsup: independent (a mask per view: the positive pair) | shared: both views under the same mask, the "
        "paper's 'fixed 0.1' (a sentence is then encoded once and its embedding is both views: the same computation)",
        OBJECTIVE,
    )
    encoders: str = option(
        "shared",
        "shared: one encoder for every view (SimCSE) | two: the positive view (and hard negatives) go through a "
        "second, independent copy of the pretrained encoder: the paper's Table 2 'two encoders'; the first is saved",
        OBJECTIVE,
    )
    similarity: str = option(
        "cosine", "cosine (the paper's) | dot: the dot product of the unnormalised embeddings", OBJECTIVE
    )
    hard_negative_weight: float = option(
        1.0, "alpha, multiplies exp(sim) of each anchor's own hard negative", OBJECTIVE
    )
    loss: str = option(
        "infonce",
        "infonce (SimCSE) | binary: Contrastive Tension's objective, every (anchor, candidate) pair a binary "
        "decision (sigmoid of similarity / temperature, label 1 for the positive), with encoders two",
        OBJECTIVE,
    )
    word_repetition: float = option(
        0.0,
        "ESimCSE: the positive view repeats random subwords: up to max(2, int(RATE * length)) of them (the "
        "paper's rule; its 0.32); 0 = off (unsup)",
        OBJECTIVE,
    )
    queue_size: int = option(
        0,
        "ESimCSE: > 0 keeps the last N anchors, encoded by a momentum copy of the encoder without dropout, "
        "as extra negatives (the paper: 2.5 x batch_size)",
        OBJECTIVE,
    )
    queue_momentum: float = option(0.995, "ESimCSE: the momentum copy's EMA factor m", OBJECTIVE)
    negatives_without_dropout: bool = option(
        False,
        "SimCSE++: the negative pairs are the sentences encoded once more with dropout off (unsup)",
        OBJECTIVE,
    )
    dimension_contrast_weight: float = option(
        0.0,
        "SimCSE++: > 0 adds the dimension-wise contrastive term with this weight (the paper's 0.1)",
        OBJECTIVE,
    )
    dimension_contrast_temperature: float = option(
        5.0, "SimCSE++: the dimension-wise term's temperature", OBJECTIVE
    )
    guide_model: str = option(
        "",
        "false-negative filtering (GISTEmbed): a model (any the toolkit loads) that drops the in-batch "
        "negatives it rates closer to the anchor than the anchor's positive; empty = off",
        OBJECTIVE,
    )
    guide_margin: float = option(
        0.0,
        "false-negative filtering: drop negatives rated above the positive's similarity minus this",
        OBJECTIVE,
    )
    dropout_range: str = option(
        "",
        "S-SimCSE: LOW,HIGH: the anchors and the other views are two passes, each under a dropout rate drawn "
        "uniformly from [LOW, HIGH) (training only; the saved config keeps the checkpoint's rate)",
        OBJECTIVE,
    )
    noise_negatives: int = option(
        0,
        "GS-InfoNCE: this many Gaussian noise vectors as extra negatives of every anchor each step",
        OBJECTIVE,
    )
    noise_std: float = option(
        1.0, "GS-InfoNCE: the noise's standard deviation (with cosine only the direction counts)", OBJECTIVE
    )
    # PromptBERT (pooler prompt; simcse.prompts, simcse.modeling.prompt)
    prompt_template: str = option(
        "",
        "pooler prompt: the template, [X] where the sentence goes and [MASK] whose last-layer state is the "
        "embedding; two (joined by || or a YAML list) give the anchors and the positives their own, the first "
        "also encodes; empty = the paper's BERT pair 'This sentence of \"[X]\" means [MASK] .' || "
        "'This sentence : \"[X]\" means [MASK] .'",
        OBJECTIVE,
    )
    prompt_denoise: str = option(
        "train",
        "pooler prompt: subtract the template's own [MASK] state (the template without the sentence, at the "
        "positions it has around it): none | train (the paper's: in training, with gradients; the saved "
        "model encodes without it) | always (also when encoding)",
        OBJECTIVE,
    )
    do_mlm: bool = option(False, "add the masked-language-model auxiliary loss", OBJECTIVE)
    mlm_weight: float = option(0.1, "lambda: loss = contrastive + lambda * MLM", OBJECTIVE)
    mlm_probability: float = option(0.15, "share of tokens masked for the MLM loss", OBJECTIVE)
    # DiffCSE (Chuang et al. 2022): conditional replaced-token detection (simcse.training.diffcse)
    diffcse_generator: str = option(
        "",
        "DiffCSE: the frozen masked-language model (HF id or directory with its MLM head, sharing the "
        "encoder's vocabulary, e.g. distilbert-base-uncased) that fills masked tokens of each sentence; a "
        "discriminator conditioned on the sentence embedding detects the replaced ones; empty = off",
        OBJECTIVE,
    )
    diffcse_mask_ratio: float = option(  # the paper's BERT-base STS settings
        0.3, "DiffCSE: share of each sentence's tokens masked for the generator", OBJECTIVE
    )
    diffcse_weight: float = option(
        0.005, "DiffCSE: lambda: loss = contrastive + lambda * replaced-token detection", OBJECTIVE
    )
    diffcse_batchnorm: bool = option(
        False,
        "DiffCSE's two-layer BatchNorm projection (its --batchnorm, used for its BERT STS model) in place of "
        "SimCSE's MLP in training; needs pooler cls and mlp_only_train (it is never saved)",
        OBJECTIVE,
    )
    mlm_head: str = option(
        "original",
        "original: what the original code trained (a fresh untied head for BERT-style checkpoints, whose head "
        "its lm_head module did not load; an untied copy of the pretrained head for RoBERTa-style ones) | "
        "untied: an untied copy of the pretrained head | fresh: a newly initialised untied head | tied: the "
        "pretrained head sharing the input embeddings",
        OBJECTIVE,
    )
    ddp_gradient: str = option(
        "original",
        "several processes: original = the gradient of the loss over the whole batch divided by the number "
        "of processes, as the original code's DDP gives (so max_grad_norm clips as in the paper's multi-GPU "
        "runs) | global = that gradient undivided, as one process gives, whatever the number of processes",
        OBJECTIVE,
    )

    batch_size: int = option(
        64, "global: sentences (rows) per step over all processes = in-batch negatives", OPTIM
    )
    gradcache_chunk_size: int = option(
        0, "> 0: cached-gradient large batches, rows per chunk per process", OPTIM
    )
    gradient_accumulation_steps: int = option(
        1, "only 1: accumulation does not add negatives (use GradCache)", OPTIM
    )
    num_epochs: int = option(1, "passes over the training file", OPTIM)
    max_steps: int = option(0, "> 0 overrides num_epochs", OPTIM)
    learning_rate: float = option(3e-5, "AdamW peak learning rate", OPTIM)
    lr_scheduler: str = option("linear", "linear (decay to 0 after warmup) | constant", OPTIM)
    warmup_steps: int = option(0, "linear warmup steps", OPTIM)
    warmup_ratio: float = option(0.0, "warmup as a share of all steps (instead of warmup_steps)", OPTIM)
    weight_decay: float = option(0.0, "AdamW weight decay (never on biases and LayerNorm weights)", OPTIM)
    adam_beta1: float = option(0.9, "AdamW beta1", OPTIM)
    adam_beta2: float = option(0.999, "AdamW beta2", OPTIM)
    adam_epsilon: float = option(1e-8, "AdamW epsilon", OPTIM)
    optimizer: str = option(
        "adamw_hf",
        "adamw_hf: the transformers 4.x AdamW the original's Trainer used (epsilon added before the bias "
        "correction, weight decay after the update) | adamw: torch's AdamW",
        OPTIM,
    )
    max_grad_norm: float = option(1.0, "gradient clipping norm; 0 = no clipping", OPTIM)
    precision: str = option(
        "auto",
        "auto (GPU: bf16, else fp16 + scaling; CPU: bf16 autocast where it has AMX or AVX512-BF16, else "
        "fp32) | fp32 | bf16 | fp16",
        OPTIM,
    )
    seed: int = option(42, "seeds the MLP, dropout, shuffling and masking", OPTIM)

    output_dir: str = option("runs/simcse", "where the model, checkpoints and logs go", EVAL)
    overwrite_output_dir: bool = option(False, "replace a non-empty output_dir", EVAL)
    dev_eval: bool = option(
        True, "STS-B / SICK-R dev evaluation for checkpoint selection (needs the SentEval data)", EVAL
    )
    eval_steps: int = option(250, "dev evaluation every N steps; 0 = only at the end", EVAL)
    eval_at_end: bool = option(
        False,
        "also evaluate the last step's model when it is not a multiple of eval_steps (the original "
        "does not, so its best model is one of the eval_steps ones)",
        EVAL,
    )
    eval_before_training: bool = option(True, "also score the untrained model, to report the gain", EVAL)
    geometry_steps: int = option(
        0,
        "every N steps (and before the first), log alignment and uniformity of STS-B dev into metrics.jsonl "
        "(kind geometry; the paper's Figure 2 used 10; simcse plot geometry draws them); 0 = never",
        EVAL,
    )
    dev_file: str = option(
        "",
        "your dev set for checkpoint selection instead of STS-B/SICK-R dev: a .csv/.tsv of sentence1, "
        "sentence2, score (header optional, any score range) or a directory of STS.input.X.txt/STS.gs.X.txt",
        EVAL,
    )
    metric_for_best_model: str = option(
        "auto", "auto (dev_spearman with dev_file, else stsb_spearman) | " + " | ".join(BEST_METRICS), EVAL
    )
    eval_batch_size: int = option(128, "sentences per batch in evaluation", EVAL)
    final_eval: str = option(
        "sts", "test-set evaluation of the best model at the end: " + " | ".join(FINAL_EVALS), EVAL
    )
    final_eval_baseline: bool = option(
        False, "also evaluate the untrained model (same pooler) for comparison", EVAL
    )
    save_steps: int = option(250, "resumable checkpoint every N steps; 0 = none", EVAL)
    save_total_limit: int = option(2, "checkpoints kept", EVAL)
    logging_steps: int = option(10, "a metrics.jsonl record every N steps", EVAL)
    report_to: list[str] = field(
        default_factory=lambda: ["auto"], metadata={"help": REPORT_TO_HELP, "group": EVAL}
    )
    tensorboard: bool = option(
        True,
        "with report_to auto: TensorBoard logs when the tensorboard package is installed; false leaves "
        "them out (and report_to tensorboard then is an error)",
        EVAL,
    )
    progress_bar: bool = option(True, "a progress bar on the terminal", EVAL)
    license: str = option(
        "",
        "the model card's license (e.g. apache-2.0); empty = the starting model's card's, if it names one",
        EVAL,
    )
    language: str = option(
        "",
        "the model card's language (e.g. en); empty = the starting model's card's, else en for the paper's data",
        EVAL,
    )

    device: str = option("auto", " | ".join(DEVICES), PERF)
    packed: str = option("auto", "unpadded execution of BERT-style models: auto (CPU only) | on | off", PERF)
    attn_implementation: str = option("sdpa", "sdpa | eager", PERF)
    compile: bool = option(
        False, "torch.compile the encoder (batches padded to max_seq_len: one graph)", PERF
    )
    tf32: bool = option(True, "GPUs: TF32 tensor cores for the fp32 matmuls", PERF)
    compile_backend: str = option(
        "inductor", "torch.compile backend: inductor | aot_eager | cudagraphs ...", PERF
    )
    fast_dropout: bool = option(
        True, "CPU: dropout masks from 32-bit draws, ~2x cheaper than bernoulli_ (no GPU effect)", PERF
    )
    num_threads: int = option(0, "CPU threads for torch; 0 = torch's default", PERF)
    extra: dict[str, Any] = field(
        default_factory=dict,
        repr=False,
        metadata={"help": "free-form notes kept with the run (a mapping)", "group": EVAL},
    )

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """A config from raw values (YAML or flags); every unknown key and bad value is reported at once."""
        names = cls.field_names()
        problems, kwargs = [], {}
        for key, value in values.items():
            if key not in names:
                problems.append(
                    f"unknown config key {shorten(repr(key), 80)}{_suggest(str(key)[:100], names)}"
                )
                continue
            try:
                kwargs[key] = _coerce(key, value)
            except ConfigError as e:
                problems.append(str(e))
        _raise_together(problems, source)
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(read_yaml(path), source=str(path))

    def override(self, values: dict[str, Any], source: str = "command line") -> TrainConfig:
        merged = {**dataclasses.asdict(self), **values}
        return TrainConfig.from_dict(merged, source=source)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def best_metric(self) -> str:
        """The dev metric that picks the best model (``auto`` resolved)."""
        if self.metric_for_best_model != "auto":
            return self.metric_for_best_model
        return "dev_spearman" if self.dev_file else "stsb_spearman"

    # ------------------------------------------------------------------ validation
    def validate(self) -> TrainConfig:
        """Reject bad values and invalid combinations, every one at once, each with what to do. Only the
        options are looked at: nothing here depends on the machine (see the class docstring), except
        whether each tracker ``report_to`` names is installed."""
        problems = [p for p in (_choice(*c) for c in self._choices()) if p]
        check = problems.append
        if not self.train_file:
            check("train_file is required (a .txt file for unsup, .csv/.tsv for sup)")
        elif self.train_file.startswith("snli:"):
            from simcse.nli_files import check_name

            try:
                check_name(self.train_file)
            except ConfigError as e:
                check(str(e))
        if self.gradient_accumulation_steps != 1:
            check(
                "gradient_accumulation_steps must be 1: accumulating gradients over small batches does not add "
                "in-batch negatives, so it does not train like a large batch. For a large batch that does not fit "
                "in memory set batch_size to the full size and gradcache_chunk_size to what fits (GradCache)."
            )
        if self.dev_file and self.metric_for_best_model not in ("auto", "dev_spearman"):
            check(f"metric_for_best_model {self.metric_for_best_model} scores the STS-B/SICK-R dev sets; with "
                  "dev_file use dev_spearman (or auto)")  # fmt: skip
        if not self.dev_file and self.metric_for_best_model == "dev_spearman":
            check("metric_for_best_model dev_spearman needs dev_file (your dev set)")
        if self.mlp_only_train and self.pooler not in ("cls", "prompt"):
            check("mlp_only_train needs pooler 'cls' or 'prompt' (the poolers with an MLP)")
        for name in ("temperature", "learning_rate", "eval_batch_size", "noise_std"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                check(f"{name} must be > 0, got {value}")
        if self.batch_size < 2:
            check(f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}")
        if self.max_seq_len < 3:
            check(f"max_seq_len must be at least 3, got {self.max_seq_len}")
        if not (self.hard_negative_weight >= 0 and math.isfinite(self.hard_negative_weight)):
            check(f"hard_negative_weight must be a finite number >= 0, got {self.hard_negative_weight}")
        problems += self._family_problems()
        if self.augment:
            from simcse.augment import parse_augment

            try:
                parse_augment(self.augment, self.augment_thesaurus or None, load_models=False)
            except ConfigError as e:
                check(str(e))
            if self.objective == "sup":
                check("augment changes the positive of unsup training; sup rows bring their own positives")
        if self.positive != "self" and (
            self.objective == "sup" or self.augment or self.dropout_mask == "shared"
        ):
            check(f"positive {self.positive} replaces unsup's positive; it does not combine with sup training, "
                  "augment or dropout_mask shared")  # fmt: skip
        if self.dropout_mask == "shared" and (self.objective == "sup" or self.augment):
            check(
                "dropout_mask shared is for unsup training without augment (the views must be the same sentence)"
            )
        if self.dropout_range:
            try:
                self.dropout_bounds()
            except ValueError as e:
                check(f"dropout_range {self.dropout_range!r}: {e}")
            if self.dropout_mask == "shared" or self.dropout is not None:
                check(
                    "dropout_range draws the rates itself; it does not combine with dropout or dropout_mask shared"
                )
        if self.pooler == "prompt" or self.prompt_template:  # PromptBERT
            from simcse.prompts import check_denoise, check_templates

            try:
                check_denoise(self.prompt_denoise)
            except ConfigError as e:
                check(str(e))
            try:
                if self.prompt_template:
                    check_templates(self.prompt_template)
            except ConfigError as e:
                check(str(e))
            if self.pooler != "prompt":
                check(f"prompt_template applies to pooler prompt (the pooler is {self.pooler})")
            if self.dropout_mask == "shared":
                check("dropout_mask shared encodes a sentence once for both views; pooler prompt puts each view "
                      "in its own template")  # fmt: skip
            if self.compile:
                check("compile needs static shapes; pooler prompt's template pass has data-dependent ones")
        if self.encoders == "two" and self.dropout_mask == "shared":
            check(
                "encoders two encodes the views apart; dropout_mask shared encodes a sentence once for both"
            )
        if self.dropout is not None and not 0 <= self.dropout < 1:
            check(f"dropout must be in [0, 1) or none (the checkpoint's own), got {self.dropout}")
        if not 0 < self.mlm_probability < 1:
            check(f"mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if not (self.mlm_weight >= 0 and math.isfinite(self.mlm_weight)):
            check(f"mlm_weight must be >= 0, got {self.mlm_weight}")
        if not 0 < self.diffcse_mask_ratio < 1:
            check(f"diffcse_mask_ratio must be in (0, 1), got {self.diffcse_mask_ratio}")
        if not (self.diffcse_weight >= 0 and math.isfinite(self.diffcse_weight)):
            check(f"diffcse_weight must be >= 0, got {self.diffcse_weight}")
        if not self.diffcse_generator and any(
            getattr(self, k) != self.__dataclass_fields__[k].default
            for k in ("diffcse_weight", "diffcse_mask_ratio")
        ):
            check("diffcse_weight and diffcse_mask_ratio configure DiffCSE, which needs diffcse_generator: a "
                  "masked-language model sharing the encoder's vocabulary (e.g. distilbert-base-uncased)")  # fmt: skip
        if self.diffcse_batchnorm and (self.pooler != "cls" or not self.mlp_only_train):
            check(
                "diffcse_batchnorm replaces the cls MLP in training only: it needs pooler cls and mlp_only_train"
            )
        if self.diffcse_batchnorm and self.gradcache_chunk_size:
            check("diffcse_batchnorm normalises over the whole batch, which GradCache's chunks split; set "
                  "gradcache_chunk_size 0")  # fmt: skip
        if not 0 <= self.warmup_ratio < 1:
            check(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.warmup_steps and self.warmup_ratio:
            check("set warmup_steps or warmup_ratio, not both")
        for name in NON_NEGATIVE:
            if getattr(self, name) < 0:
                check(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.num_epochs == 0 and self.max_steps == 0:
            check("set num_epochs or max_steps")
        if self.save_total_limit < 1:
            check(f"save_total_limit must be at least 1, got {self.save_total_limit}")
        if not (0 <= self.weight_decay < math.inf and self.max_grad_norm >= 0):
            check("weight_decay and max_grad_norm must be >= 0")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1 and self.adam_epsilon > 0):
            check("adam_beta1 and adam_beta2 must be in [0, 1) and adam_epsilon > 0")
        if self.gradcache_chunk_size and self.gradcache_chunk_size >= self.batch_size:
            check(
                f"gradcache_chunk_size ({self.gradcache_chunk_size}) must be smaller than batch_size "
                f"({self.batch_size}); set it to 0 to train the batch in one pass"
            )
        if self.objective == "unsup" and self.hard_negative_weight != 1.0:
            check("hard_negative_weight applies to sup training with a hard-negative column")
        if self.compile and self.packed == "on":
            check(
                "compile needs static shapes and packed execution has data-dependent ones; set packed off or auto"
            )
        if self.device not in DEVICES[:3] and not self.device.startswith("cuda:"):
            check(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        problems += _report_to_problems(self.report_to, self.tensorboard)
        _raise_together(problems)
        return self

    def _family_problems(self) -> list[str]:
        """The follow-up methods' options (ESimCSE, SimCSE++, false-negative filtering, CT)."""
        problems = []
        if not 0 <= self.word_repetition < 1:
            problems.append(f"word_repetition must be in [0, 1), got {self.word_repetition}")
        if self.word_repetition and (self.objective == "sup" or self.dropout_mask == "shared"):
            problems.append("word_repetition changes the positive of unsup training (not sup rows, not "
                            "dropout_mask shared, whose views are one pass)")  # fmt: skip
        if self.word_repetition and self.compile:
            problems.append("word_repetition lengthens sequences; compile needs every batch at max_seq_len")
        if not 0 <= self.queue_momentum < 1:
            problems.append(f"queue_momentum must be in [0, 1), got {self.queue_momentum}")
        if self.negatives_without_dropout:
            if self.objective == "sup" or self.dropout_mask == "shared" or self.encoders == "two":
                problems.append("negatives_without_dropout is for unsup training with one shared encoder and "
                                "independent dropout masks")  # fmt: skip
            if self.loss == "binary":
                problems.append(
                    "negatives_without_dropout is an InfoNCE variant; it does not combine with loss binary"
                )
            if self.guide_model:
                problems.append(
                    "negatives_without_dropout builds its own negatives; guide_model filters the batch's"
                )
        if not (self.dimension_contrast_weight >= 0 and math.isfinite(self.dimension_contrast_weight)):
            problems.append(f"dimension_contrast_weight must be >= 0, got {self.dimension_contrast_weight}")
        if not (
            self.dimension_contrast_temperature > 0 and math.isfinite(self.dimension_contrast_temperature)
        ):
            problems.append(
                f"dimension_contrast_temperature must be > 0, got {self.dimension_contrast_temperature}"
            )
        if self.dimension_contrast_weight and self.dropout_mask == "shared":
            problems.append("dimension_contrast_weight compares two views; dropout_mask shared has one")
        if not math.isfinite(self.guide_margin):
            problems.append(f"guide_margin must be a finite number, got {self.guide_margin}")
        if self.loss == "binary" and self.hard_negative_weight != 1.0:
            problems.append("hard_negative_weight weighs InfoNCE's denominator; loss binary has none")
        return problems

    def dropout_bounds(self) -> tuple[float, float] | None:
        """``dropout_range`` as (LOW, HIGH), or None when unset; ValueError says what is wrong."""
        if not self.dropout_range:
            return None
        parts = self.dropout_range.split(",")
        try:
            low, high = (float(x) for x in parts)
        except ValueError:
            raise ValueError("expected LOW,HIGH, two numbers, e.g. 0.05,0.25") from None
        if not 0 <= low <= high < 1:
            raise ValueError("expected 0 <= LOW <= HIGH < 1")
        return low, high

    def _choices(self) -> list[tuple[str, str, tuple[str, ...]]]:
        return [("pooler", self.pooler, POOLERS), ("objective", self.objective, OBJECTIVES),
                ("precision", self.precision, PRECISIONS), ("lr_scheduler", self.lr_scheduler, SCHEDULERS),
                ("metric_for_best_model", self.metric_for_best_model, ("auto", *BEST_METRICS)),
                ("final_eval", self.final_eval, FINAL_EVALS), ("packed", self.packed, PACKED),
                ("attn_implementation", self.attn_implementation, ("sdpa", "eager")),
                ("mlm_head", self.mlm_head, MLM_HEADS), ("ddp_gradient", self.ddp_gradient, DDP_GRADIENTS),
                ("optimizer", self.optimizer, OPTIMIZERS), ("similarity", self.similarity, SIMILARITIES),
                ("dropout_mask", self.dropout_mask, ("independent", "shared")),
                ("encoders", self.encoders, ("shared", "two")), ("loss", self.loss, ("infonce", "binary")),
                ("positive", self.positive, ("self", "next_sentence", "next_3_sentences"))]  # fmt: skip


MLM_HEADS = ("original", "untied", "fresh", "tied")
DDP_GRADIENTS = ("original", "global")
OPTIMIZERS = ("adamw_hf", "adamw")
SIMILARITIES = ("cosine", "dot")
NULLABLE = ("model_name_or_path", "data_dir", "dropout")  # null / none in YAML and on the command line

NON_NEGATIVE = ("num_epochs", "max_steps", "noise_negatives", "queue_size", "eval_steps", "geometry_steps", "save_steps", "gradcache_chunk_size", "warmup_steps",
                "max_train_samples", "num_threads", "logging_steps", "seed")  # fmt: skip


def _raise_together(problems: list[str], source: str | None = None) -> None:
    """One ConfigError for every problem found: one line, the problems separated by semicolons."""
    if not problems:
        return
    where = f"{source}: " if source else ""
    if len(problems) == 1:
        raise ConfigError(where + problems[0])
    raise ConfigError(f"{where}{len(problems)} problems: " + "; ".join(problems))


def option_help() -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(group, [(key, default, help)]) for ``simcse train --help``, from the fields' metadata."""
    groups: dict[str, list[tuple[str, str, str]]] = {}
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = (
            "none"
            if default is None or default == []
            else ",".join(default)
            if isinstance(default, list)
            else (
                '""' if default == "" else str(default).lower() if isinstance(default, bool) else str(default)
            )
        )
        groups.setdefault(f.metadata["group"], []).append((f.name, shown, f.metadata["help"]))
    return list(groups.items())


def parse_flags(args: list[str]) -> dict[str, Any]:
    """``--key value`` / ``--key=value`` / ``--flag`` (boolean true) into raw values (strings)."""
    values: dict[str, Any] = {}
    bools = {f.name for f in dataclasses.fields(TrainConfig) if _base_type(f.name) is bool}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(
                f"unexpected argument {shorten(repr(arg), 80)}; options are written --key value"
            )
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in TrainConfig.field_names():
            raise ConfigError(
                f"unknown option --{shorten(key, 80)}{_suggest(key, TrainConfig.field_names())}"
            )
        if not eq:
            nxt = args[i + 1] if i + 1 < len(args) else None
            if key in bools and (nxt is None or nxt.startswith("--")):
                value = "true"
            elif nxt is None or nxt.startswith("--"):
                raise ConfigError(f"option --{key} needs a value")
            else:
                value = nxt
                i += 1
        values[key] = value
        i += 1
    return values


# ---------------------------------------------------------------------------------------------- helpers
@functools.cache
def _type_hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)  # ~1 ms: worth caching, it is asked once per key


def _base_type(name: str) -> type:
    hint = _type_hints()[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and args:
        return args[0]
    return typing.get_origin(hint) or hint


def _coerce(key: str, value: Any) -> Any:
    if key == "extra":
        if isinstance(value, str):  # from a flag: --extra '{note: baseline}'
            value = safe_load_yaml(value, "extra")
        else:
            check_yaml_size(value, "extra")
        if not isinstance(value, dict):
            raise ConfigError("extra must be a mapping")
        return value
    if key == "prompt_template" and isinstance(value, list):  # YAML: a list of templates
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(
                f"prompt_template must be a template or a list of templates, got {shorten(repr(value), 80)}"
            )
        value = " || ".join(value)
    target = _base_type(key)
    if value is None:
        if key in NULLABLE:
            return None
        raise ConfigError(f"{key} needs a value")
    if key == "report_to":
        return _tracker_names(value)
    if isinstance(value, str) and key in NULLABLE and value.lower() in ("", "none", "null"):
        return None
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if target is int:
            if isinstance(value, str) and "e" in value.lower():
                value = float(value)  # 1e3; inf, nan and 1.5e0 are refused below
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if target is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if target is str:
            if not isinstance(value, (str, int, float)):  # lists, mappings, !!binary, !!set, ...
                raise ValueError
            if "\x00" in str(value):
                raise ValueError
            return str(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise ConfigError(f"{key} must be {target.__name__}, got {shorten(repr(value), 80)}") from e
    return value


def _tracker_names(value: Any) -> list[str]:
    """``report_to`` from YAML (a list, or a comma string) or a flag (a comma string); ``""`` is none."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ConfigError(
            f"report_to must be a list of tracker names or a comma string, got {shorten(repr(value), 80)}"
        )
    return list(dict.fromkeys(item.strip().lower() for item in items if item.strip()))


def _report_to_problems(names: list[str], tensorboard: bool) -> list[str]:
    """Unknown names, contradictions, and trackers whose package is not installed (checked without
    importing it: :func:`simcse.tracker_packages.missing_package`)."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return [f"report_to must be a list of tracker names, got {shorten(repr(names), 80)}"]
    unknown = [name for name in names if name not in (*TRACKERS, "auto", "none")]
    if unknown:
        return [f"report_to: unknown tracker {shorten(', '.join(map(repr, unknown)), 80)}; choose from "
                f"{', '.join(TRACKERS)}, auto or none"]  # fmt: skip
    if "none" in names and len(names) > 1:
        return ["report_to none means no tracker; do not combine it with others"]
    problems = []
    if "tensorboard" in names and not tensorboard:
        problems.append(
            "report_to names tensorboard but tensorboard is false; set tensorboard true or drop it"
        )
    from simcse.tracker_packages import missing_package

    return problems + [p for p in map(missing_package, names) if p]


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str | None:
    return None if value in choices else f"{name} must be one of {', '.join(choices)}, got {value!r}"


def _suggest(key: str, keys: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, keys, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
