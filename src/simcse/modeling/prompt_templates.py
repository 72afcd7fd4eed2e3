"""PromptBERT's templates as text (Jiang et al. 2022): the paper's defaults and the checks a template must
pass. Torch-free, so that ``TrainConfig.validate`` checks the options before any model is read; the pooler
that uses them is :mod:`simcse.modeling.prompt`.

A template is a sentence with two slots: ``[X]``, where the sentence's tokens go, and ``[MASK]``, whose
last-layer hidden state is the embedding (written ``[MASK]`` whatever the model calls its mask token).
"""

from __future__ import annotations

from collections.abc import Sequence

from simcse.core.errors import ConfigError, shorten

SENTENCE_SLOT = "[X]"
MASK_SLOT = "[MASK]"
SEPARATOR = "||"  # between the two templates of the training views, in one string
# The paper's manual template for BERT without training (Prompt-BERT run.sh, "bert-prompt": 67.85 STS avg.)
TRAINING_FREE_TEMPLATE = 'This sentence : "[X]" means [MASK] .'
# The paper's unsup BERT recipe (run.sh "unsup-bert"): the anchors under the first template, the positives
# under the second; the first also encodes the trained model.
BERT_TRAINING_TEMPLATES = ('This sentence of "[X]" means [MASK] .', 'This sentence : "[X]" means [MASK] .')
DENOISE = ("none", "train", "always")
MAX_TEMPLATES = 2


def split_templates(value: str | Sequence[str]) -> list[str]:
    """A template string (two joined by ``||``) or a list of templates, as a list (blank parts dropped)."""
    parts = value.split(SEPARATOR) if isinstance(value, str) else list(value)
    return [p.strip() for p in parts if str(p).strip()]


def template_parts(template: str, option: str = "prompt_template") -> tuple[str, str]:
    """The text before and after ``[X]``; a one-line ConfigError naming ``option`` unless the template has
    ``[X]`` and ``[MASK]`` exactly once each."""
    shown = shorten(repr(template), 80)
    problems = [
        f"{slot} {'is missing' if n == 0 else f'appears {n} times'}"
        for slot, n in (
            (SENTENCE_SLOT, template.count(SENTENCE_SLOT)),
            (MASK_SLOT, template.count(MASK_SLOT)),
        )
        if n != 1
    ]
    if problems:
        raise ConfigError(
            f"{option} {shown}: {' and '.join(problems)}; a template holds [X] (the sentence) "
            "and [MASK] (the embedding) once each"
        )
    before, _, after = template.partition(SENTENCE_SLOT)
    return before, after


def check_templates(value: str | Sequence[str], option: str = "prompt_template") -> list[str]:
    """The templates of ``value``, each checked; at most :data:`MAX_TEMPLATES` (one per view: the anchor's,
    then the others')."""
    templates = split_templates(value)
    if not templates:
        raise ConfigError(f"{option} is empty; give a template such as {TRAINING_FREE_TEMPLATE!r}")
    if len(templates) > MAX_TEMPLATES:
        raise ConfigError(
            f"{option}: {len(templates)} templates; give one, or two joined by {SEPARATOR} (the "
            "anchor's and the positive's)"
        )
    for template in templates:
        template_parts(template, option)
    return templates


def training_options(template: str, denoise: str) -> dict[str, object]:
    """The encoder's prompt options for a training run: the given template(s), else the paper's BERT pair."""
    return {
        "prompt_template": split_templates(template) or list(BERT_TRAINING_TEMPLATES),
        "prompt_denoise": denoise,
    }


def check_denoise(value: str, option: str = "prompt_denoise") -> str:
    """``value`` if it is one of :data:`DENOISE` (none | train | always), else a ConfigError naming
    ``option``."""
    if value not in DENOISE:
        raise ConfigError(f"{option} must be one of {', '.join(DENOISE)}, got {shorten(repr(value), 80)}")
    return value
