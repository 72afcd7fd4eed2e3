"""PromptBERT (Jiang et al. 2022): the sentence inside a template, its embedding the [MASK] token's state;
the anchors and the positives under two templates, the template's own [MASK] state subtracted in training.
The pooler itself is :mod:`simcse.modeling.prompt` (it encodes too); this module trains with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simcse.core.errors import ConfigError
from simcse.core.options import option
from simcse.training.methods.base import Method

GROUP = "PromptBERT (Jiang et al. 2022)"


def join_templates(value: Any) -> Any:
    """YAML may give the templates as a list: one string of them joined by ``||``."""
    if not isinstance(value, list):
        return value
    from simcse.core.errors import shorten

    if not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"prompt_template must be a template or a list of templates, got {shorten(repr(value), 80)}"
        )
    return " || ".join(value)


@dataclass
class PromptBERTOptions:
    """PromptBERT's options; each field's help line documents it."""

    prompt_template: str = option(
        "",
        "pooler prompt: the template, [X] where the sentence goes and [MASK] whose last-layer state is the "
        "embedding; two (joined by || or a YAML list) give the anchors and the positives their own, the first "
        "also encodes; empty = the paper's BERT pair 'This sentence of \"[X]\" means [MASK] .' || "
        "'This sentence : \"[X]\" means [MASK] .'",
        GROUP,
        coerce=join_templates,
    )
    prompt_denoise: str = option(
        "train",
        "pooler prompt: subtract the template's own [MASK] state (the template without the sentence, at the "
        "positions it has around it): none | train (the paper's: in training, with gradients; the saved "
        "model encodes without it) | always (also when encoding)",
        GROUP,
    )


class PromptBERT(Method):
    """PromptBERT (pooler ``prompt``): a template's [MASK] state as the embedding, with template denoising."""

    name = "promptbert"
    paper = "Jiang et al. 2022, PromptBERT: Improving BERT Sentence Embeddings with Prompts"
    Options = PromptBERTOptions

    def enabled(self, config: Any) -> bool:
        """With pooler ``prompt``."""
        return config.pooler == "prompt"

    def problems(self, config: Any) -> list[str]:
        """Valid templates and denoising, templates only with pooler prompt, and neither a shared dropout mask
        nor compile."""
        if not (config.pooler == "prompt" or config.prompt_template):
            return []
        from simcse.modeling.prompt_templates import check_denoise, check_templates

        found = []
        try:
            check_denoise(config.prompt_denoise)
        except ConfigError as e:
            found.append(str(e))
        try:
            if config.prompt_template:
                check_templates(config.prompt_template)
        except ConfigError as e:
            found.append(str(e))
        if config.pooler != "prompt":
            found.append(f"prompt_template applies to pooler prompt (the pooler is {config.pooler})")
        if config.dropout_mask == "shared":
            found.append(
                "dropout_mask shared encodes a sentence once for both views; pooler prompt puts each "
                "view in its own template"
            )
        if config.compile:
            found.append("compile needs static shapes; pooler prompt's template pass has data-dependent ones")
        return found

    def encoder_options(self, config: Any) -> dict[str, Any]:
        """The encoder's templates (default the paper's BERT pair) and denoising."""
        from simcse.modeling.prompt_templates import training_options

        return training_options(config.prompt_template, config.prompt_denoise)

    def check_encoder(self, config: Any, encoder: Any, files: Any, limit: int | None) -> None:
        """Refuse a ``max_seq_len`` that, with the longest template, exceeds the model's position limit."""
        if encoder.prompt is None or limit is None:
            return
        longest = config.max_seq_len + max(t.length for t in encoder.prompt.templates)
        if longest > limit:
            raise ConfigError(
                f"max_seq_len {config.max_seq_len} plus the prompt template makes {longest} "
                f"tokens; {files.source} supports {limit}"
            )


METHOD = PromptBERT()
