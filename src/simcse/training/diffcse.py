"""DiffCSE's conditional replaced-token detection (Chuang et al. 2022), as two pieces the trainer plugs in.

- :class:`GeneratorEdit` makes the edited sentence: a share ``diffcse_mask_ratio`` of each sentence's real
  (non-special, non-padding) tokens is masked (BERT's 80% [MASK] / 10% random / 10% unchanged, as the
  original's collator), a frozen masked-language model (``diffcse_generator``) predicts them (its most
  likely token, as the original code's ``argmax``), and its predictions take their places. A token's label is
  1 when the edited id differs from the original, so a token the generator re-predicts correctly is "not
  replaced"; special and padding tokens are -100 (never masked, never scored). The positions are drawn from
  the global CPU generator in the training thread (as MLM masking), so a seed fixes them on any device and a
  resume draws what the uninterrupted run would.
- :class:`Discriminator` is a second transformer, initialised from the same pretrained encoder, whose [CLS]
  input (the embedding layer's output at position 0, the original's ``cls_input``) is replaced by the
  sentence embedding; a linear head predicts replaced vs original for every token. Its cross-entropy is
  summed over the scored tokens and returned with their count, like the MLM term, so GradCache normalises
  it over the whole batch. The gradient reaches the sentence encoder through the embedding.

The loss is contrastive + ``diffcse_weight`` * the mean replaced-token cross-entropy. The discriminator is
trained and kept in resumable checkpoints, never saved with the encoder; the generator is frozen and
reloaded by name.

:class:`BatchNormProjection` (``diffcse_batchnorm``) is the original's other training-only piece: the
two-layer projection with batch normalisation (its ``--batchnorm``, used for its BERT STS model) in place of
SimCSE's Linear+Tanh MLP, over the [CLS] state while training only (``mlp_only_train``), so never saved.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from simcse.errors import ConfigError

IGNORE = -100  # label of the tokens that are never scored (special and padding)


def load_generator(name: str, encoder_tokenizer: Any, ratio: float) -> GeneratorEdit:
    """The frozen generator ``name`` (HF id or directory) checked against the encoder's vocabulary;
    a one-line error naming ``diffcse_generator`` when it cannot be loaded, has no MLM head, or its
    vocabulary differs."""
    from simcse.augment import load_mlm

    model, tokenizer = load_mlm(name, option="diffcse_generator")
    ours, theirs = encoder_tokenizer.get_vocab(), tokenizer.get_vocab()
    if ours != theirs:
        differ = len(set(ours.items()) ^ set(theirs.items()))
        raise ConfigError(
            f"diffcse_generator {name}: its vocabulary ({len(theirs)} tokens) is not the encoder's "
            f"({len(ours)} tokens; {differ} entries differ); the generator must share the encoder's tokenizer "
            "(e.g. distilbert-base-uncased for bert-base-uncased, distilroberta-base for roberta-base)"
        )
    return GeneratorEdit(model, tokenizer, ratio)


class GeneratorEdit:
    """``(input_ids, attention_mask)`` -> (edited ids, replaced-token labels) on the generator's device.

    ``generator``: a frozen ``AutoModelForMaskedLM`` (anything returning ``.logits`` of (batch, length,
    vocabulary)); ``tokenizer``: its tokenizer (the encoder's vocabulary). Never predicts a special token.
    Give it the batch while it is still on the CPU: the positions are drawn there, with no device sync.
    """

    def __init__(self, generator: nn.Module, tokenizer: Any, ratio: float):
        if tokenizer.mask_token_id is None:
            raise ConfigError("diffcse_generator: its tokenizer has no [MASK] token")
        self.generator = generator
        self.mask_id = int(tokenizer.mask_token_id)
        self.vocab_size = len(tokenizer)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.ratio = ratio

    def to(self, device: torch.device) -> GeneratorEdit:
        self.generator.to(device)
        return self

    def mask(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the generator's input, the chosen positions), on the inputs' device; every draw is on the CPU
        generator."""
        cpu_ids, cpu_mask = input_ids.cpu(), attention_mask.cpu()
        maskable = cpu_mask.bool() & ~torch.isin(cpu_ids, self.special)
        chosen = torch.bernoulli(torch.full(cpu_ids.shape, self.ratio)).bool() & maskable
        to_mask = torch.bernoulli(torch.full(cpu_ids.shape, 0.8)).bool() & chosen
        randomize = torch.bernoulli(torch.full(cpu_ids.shape, 0.5)).bool() & chosen & ~to_mask
        random_ids = torch.randint(self.vocab_size, cpu_ids.shape, dtype=torch.long)
        masked = cpu_ids.clone()
        masked[to_mask] = self.mask_id
        masked[randomize] = random_ids[randomize]
        return masked.to(input_ids.device), chosen.to(input_ids.device)

    @torch.no_grad()
    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        autocast: contextlib.AbstractContextManager | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        masked, chosen = self.mask(input_ids, attention_mask)
        device = next(self.generator.parameters(), torch.empty(0)).device
        masked, chosen, input_ids, attention_mask = (
            t.to(device, non_blocking=True) for t in (masked, chosen, input_ids, attention_mask)
        )
        with autocast or contextlib.nullcontext():
            logits = self.generator(input_ids=masked, attention_mask=attention_mask).logits
        logits = logits[..., : self.vocab_size].float()
        logits[..., self.special.to(device)] = -float("inf")
        edited = torch.where(chosen, logits.argmax(-1), input_ids)
        labels = replaced_token_labels(input_ids, edited, attention_mask, self.special)
        return edited, labels


def replaced_token_labels(
    original: torch.Tensor, edited: torch.Tensor, attention_mask: torch.Tensor, special: torch.Tensor
) -> torch.Tensor:
    """1 where the edited id differs from the original, 0 where it is the same, -100 on special and padding
    tokens (never scored)."""
    labels = (edited != original).long()
    scored = attention_mask.bool() & ~torch.isin(original, special.to(original.device))
    return labels.masked_fill(~scored, IGNORE)


class Discriminator(nn.Module):
    """``forward(edited_ids, attention_mask, sentence_embeddings, labels)`` -> (cross-entropy summed over the
    scored tokens, their number): replaced-token detection conditioned on the sentence embedding.

    ``backbone``: a copy of the pretrained encoder's transformer (any HF model with an ``embeddings``
    module); the embedding layer's output at position 0 is replaced by the sentence embedding, so every
    token attends to it (the original's ``cls_input``).
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        embeddings = getattr(backbone, "embeddings", None)
        if not isinstance(embeddings, nn.Module):
            raise ConfigError(
                f"diffcse_generator: model type {backbone.config.model_type!r} has no embeddings module to "
                "condition the discriminator on"
            )
        self.backbone = backbone
        self.head = nn.Linear(int(backbone.config.hidden_size), 2)
        self._condition: torch.Tensor | None = None
        embeddings.register_forward_hook(self._put_condition)

    def _put_condition(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if self._condition is None:
            return None
        first = self._condition.to(output.dtype).unsqueeze(1)
        return torch.cat([first, output[:, 1:]], dim=1)

    def forward(
        self,
        edited_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sentence_embeddings: torch.Tensor,
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, int]:
        if sentence_embeddings.shape[-1] != self.head.in_features:
            raise ValueError(
                f"the sentence embedding has {sentence_embeddings.shape[-1]} dimensions, the discriminator "
                f"{self.head.in_features}"
            )
        self._condition = sentence_embeddings
        try:
            hidden = self.backbone(input_ids=edited_ids, attention_mask=attention_mask).last_hidden_state
        finally:
            self._condition = None
        scored = labels != IGNORE
        count = int(scored.sum())
        if count == 0:
            return hidden.sum() * 0.0 + self.head.weight.sum() * 0.0, 0
        logits = self.head(hidden[scored]).float()
        return F.cross_entropy(logits, labels[scored], reduction="sum"), count


class BatchNormProjection(nn.Module):
    """Linear(d, 2d) - BatchNorm - ReLU - Linear(2d, d) - BatchNorm without affine parameters, no biases (the
    original's ``ProjectionMLP``); linear weights N(0, ``init_std``) as Hugging Face initialises them. The
    statistics are the whole batch's (every view of every row in one call), so it needs one pass per batch."""

    def __init__(self, dim: int, init_std: float = 0.02):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, 2 * dim, bias=False),
            nn.BatchNorm1d(2 * dim),
            nn.ReLU(),
            nn.Linear(2 * dim, dim, bias=False),
            nn.BatchNorm1d(dim, affine=False),
        )
        for module in self.net:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
