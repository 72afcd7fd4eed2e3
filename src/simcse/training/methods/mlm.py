"""The masked-language-model auxiliary loss (the paper's Appendix: loss = contrastive + lambda * MLM), on a
BERT-masked copy of each batch, through the checkpoint's LM head as ``mlm_head`` says."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simcse.core.options import must_be_in_unit_interval, must_be_non_negative, option
from simcse.training.methods.base import Method

GROUP = "MLM auxiliary loss (the paper's Appendix)"
MLM_HEADS = ("original", "untied", "fresh", "tied")


@dataclass
class MLMOptions:
    """The MLM auxiliary objective's options; each field's help line documents it."""

    do_mlm: bool = option(False, "add the masked-language-model auxiliary loss", GROUP)
    mlm_weight: float = option(0.1, "lambda: loss = contrastive + lambda * MLM", GROUP)
    mlm_probability: float = option(0.15, "share of tokens masked for the MLM loss", GROUP)
    mlm_head: str = option(
        "original",
        "original: what the original code trained (a fresh untied head for BERT-style checkpoints, whose head "
        "its lm_head module did not load; an untied copy of the pretrained head for RoBERTa-style ones) | "
        "untied: an untied copy of the pretrained head | fresh: a newly initialised untied head | tied: the "
        "pretrained head sharing the input embeddings",
        GROUP,
        choices=MLM_HEADS,
    )


def mlm_term(
    model: Any, embeddings: Any, input_ids: Any, attention_mask: Any, labels: Any
) -> tuple[Any, int]:
    """The MLM cross-entropy summed over the masked tokens, and their number: the encoder's last layer over
    the masked copy, through the LM head."""
    from simcse.training.losses import mlm_loss

    hidden = model.encoder.hidden_states(input_ids, attention_mask)[model.encoder.num_layers]
    mean, count = mlm_loss(model.mlm_head, hidden, labels)
    return mean * count, count


class MLM(Method):
    """The MLM auxiliary objective (``do_mlm``): masked-language modelling on a masked copy of the batch,
    weighted by ``mlm_weight``."""

    name = "mlm"
    paper = "Gao et al. 2021, SimCSE (Appendix: MLM auxiliary objective)"
    Options = MLMOptions

    def enabled(self, config: Any) -> bool:
        """With ``do_mlm``."""
        return config.do_mlm

    def problems(self, config: Any) -> list[str]:
        """``mlm_probability`` in (0, 1) and a non-negative ``mlm_weight``."""
        found = must_be_in_unit_interval(config, "mlm_probability", closed_low=False)
        return found + must_be_non_negative(config, "mlm_weight")

    def needs_masked_lm(self, config: Any) -> bool:
        """Always: the LM head comes from the checkpoint's masked-language model."""
        return True

    def model_parts(self, config: Any, files: Any, encoder: Any) -> dict[str, Any]:
        """``mlm_head``: the LM head ``mlm_head`` picks (untied, fresh or tied)."""
        from simcse.training.heads import mlm_head_of, resolved_mlm_head

        kind = resolved_mlm_head(files.mlm_model, config.mlm_head)
        return {"mlm_head": mlm_head_of(files.mlm_model, kind)}

    def model_notes(self, config: Any, files: Any) -> list[str]:
        """A note when the LM head starts freshly initialised (the checkpoint has none, or the option asks for
        it)."""
        from simcse.training.heads import resolved_mlm_head

        fresh = resolved_mlm_head(files.mlm_model, config.mlm_head) == "fresh"
        pretrained = None if fresh else files.mlm_head_pretrained
        if pretrained is False:
            return ["the checkpoint has no MLM head; it starts freshly initialised"]
        if pretrained is None:
            return [
                f"the MLM head starts freshly initialised (mlm_head: {config.mlm_head}; the original code's "
                "BERT runs trained such a head)"
            ]
        return []

    def aux_term(self, config: Any) -> tuple[str, Any]:
        """``("mlm", mlm_term)``: the MLM loss over ``mlm_input_ids`` / ``mlm_labels``."""
        return "mlm", mlm_term

    def aux_weight(self, config: Any) -> float:
        """``mlm_weight``."""
        return config.mlm_weight

    def batch_inputs(self, config: Any, tokenizer: Any, device: Any) -> Any:
        """A function adding the masked copy and its labels (``mlm_input_ids``, ``mlm_labels``) to a batch."""
        from simcse.training.masking import MLMMasker

        masker = MLMMasker(tokenizer, config.mlm_probability)

        def inputs(batch: dict[str, Any], autocast: Any) -> dict[str, Any]:
            ids, labels = masker(batch["input_ids"], batch["attention_mask"])
            return {"mlm_input_ids": ids, "mlm_labels": labels}

        return inputs


METHOD = MLM()
