"""DiffCSE (Chuang et al. 2022): conditional replaced-token detection. A frozen masked-language model (the
generator) fills masked tokens of each sentence; a discriminator, conditioned on the sentence embedding,
tells the replaced tokens from the original ones, and its loss is added to the contrastive one.

The pieces: the generator edit (:class:`simcse.training.masking.GeneratorEdit`), the discriminator and the
BatchNorm projection (:mod:`simcse.training.heads`); the discriminator is trained and kept in resumable
checkpoints, never saved with the encoder, and the generator is frozen and reloaded by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simcse.core.options import must_be_in_unit_interval, must_be_non_negative, option
from simcse.training.methods.base import Method

GROUP = "DiffCSE (Chuang et al. 2022)"


@dataclass
class DiffCSEOptions:
    """DiffCSE's options; each field's help line documents it."""

    diffcse_generator: str = option(
        "",
        "DiffCSE: the frozen masked-language model (HF id or directory with its MLM head, sharing the "
        "encoder's vocabulary, e.g. distilbert-base-uncased) that fills masked tokens of each sentence; a "
        "discriminator conditioned on the sentence embedding detects the replaced ones; empty = off",
        GROUP,
    )
    diffcse_mask_ratio: float = option(  # the paper's BERT-base STS settings
        0.3, "DiffCSE: share of each sentence's tokens masked for the generator", GROUP
    )
    diffcse_weight: float = option(
        0.005, "DiffCSE: lambda: loss = contrastive + lambda * replaced-token detection", GROUP
    )
    diffcse_batchnorm: bool = option(
        False,
        "DiffCSE's two-layer BatchNorm projection (its --batchnorm, used for its BERT STS model) in place of "
        "SimCSE's MLP in training; needs pooler cls and mlp_only_train (it is never saved)",
        GROUP,
    )


def rtd_term(
    model: Any, embeddings: Any, input_ids: Any, attention_mask: Any, labels: Any
) -> tuple[Any, int]:
    """Replaced-token detection's cross-entropy summed over the scored tokens, and their number."""
    return model.discriminator(input_ids, attention_mask, embeddings, labels)


class DiffCSE(Method):
    """DiffCSE (``diffcse_generator`` set): a frozen generator edits each sentence and a discriminator
    conditioned on the sentence embedding detects the replaced tokens, an auxiliary loss."""

    name = "diffcse"
    paper = "Chuang et al. 2022, DiffCSE: Difference-based Contrastive Learning for Sentence Embeddings"
    Options = DiffCSEOptions

    def enabled(self, config: Any) -> bool:
        """With a ``diffcse_generator``."""
        return bool(config.diffcse_generator)

    def problems(self, config: Any) -> list[str]:
        """The mask ratio in (0, 1), a non-negative weight, DiffCSE's options set without a generator, and
        ``diffcse_batchnorm``'s needs (pooler cls with mlp_only_train, no GradCache)."""
        found = must_be_in_unit_interval(config, "diffcse_mask_ratio", closed_low=False)
        found += must_be_non_negative(config, "diffcse_weight")
        defaults = DiffCSEOptions()
        if not config.diffcse_generator and (
            config.diffcse_weight != defaults.diffcse_weight
            or config.diffcse_mask_ratio != defaults.diffcse_mask_ratio
        ):
            found.append(
                "diffcse_weight and diffcse_mask_ratio configure DiffCSE, which needs diffcse_generator: "
                "a masked-language model sharing the encoder's vocabulary (e.g. distilbert-base-uncased)"
            )
        if config.diffcse_batchnorm and (config.pooler != "cls" or not config.mlp_only_train):
            found.append(
                "diffcse_batchnorm replaces the cls MLP in training only: it needs pooler cls and mlp_only_train"
            )
        if config.diffcse_batchnorm and config.gradcache_chunk_size:
            found.append(
                "diffcse_batchnorm normalises over the whole batch, which GradCache's chunks split; set "
                "gradcache_chunk_size 0"
            )
        return found

    def projection(self, config: Any, encoder: Any) -> Any:
        """With ``diffcse_batchnorm``: the BatchNorm projection, in place of the encoder's MLP (which is
        removed)."""
        if not config.diffcse_batchnorm:
            return None
        from simcse.training.heads import BatchNormProjection

        encoder.mlp = None  # in place of the encoder's MLP, which would never be trained
        std = float(getattr(encoder.backbone.config, "initializer_range", 0.02))
        return BatchNormProjection(encoder.dim, std)

    def model_parts(self, config: Any, files: Any, encoder: Any) -> dict[str, Any]:
        """``discriminator``: a copy of the pretrained transformer with a fresh replaced-token head."""
        import copy

        from simcse.training.heads import Discriminator

        # a copy of the pretrained transformer, with a fresh token head
        return {"discriminator": Discriminator(copy.deepcopy(encoder.backbone))}

    def aux_term(self, config: Any) -> tuple[str, Any]:
        """``("rtd", rtd_term)``: replaced-token detection over ``rtd_input_ids`` / ``rtd_labels``."""
        return "rtd", rtd_term

    def aux_weight(self, config: Any) -> float:
        """``diffcse_weight``."""
        return config.diffcse_weight

    def batch_inputs(self, config: Any, tokenizer: Any, device: Any) -> Any:
        """The generator edit, checked against the encoder's vocabulary and on ``device``."""
        from simcse.training.masking import load_generator

        edit = load_generator(config.diffcse_generator, tokenizer, config.diffcse_mask_ratio).to(device)

        def inputs(batch: dict[str, Any], autocast: Any) -> dict[str, Any]:
            ids, labels = edit(batch["input_ids"], batch["attention_mask"], autocast)
            return {"rtd_input_ids": ids, "rtd_labels": labels}

        return inputs

    def describe(self, config: Any) -> str:
        """The generator, its mask ratio and the term's weight."""
        return (
            f"DiffCSE: {config.diffcse_generator} fills {config.diffcse_mask_ratio:.0%} of the tokens; loss + "
            f"{config.diffcse_weight:g} x replaced-token detection"
            f"{' (BatchNorm projection)' if config.diffcse_batchnorm else ''}"
        )


METHOD = DiffCSE()
