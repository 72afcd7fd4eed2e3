"""BERT's masking (a share of the real tokens chosen; of those 80% [MASK], 10% a random token, 10% unchanged)
and its two uses: the MLM loss's inputs (:class:`MLMMasker`) and DiffCSE's generator edit
(:class:`GeneratorEdit`), whose masked tokens a frozen masked-language model fills in.

Both draw from the global CPU generator on the training thread, in that order when both run, so a seed fixes
the positions on any device and a resume draws what the uninterrupted run would.

The generator edit (Chuang et al. 2022): a share ``diffcse_mask_ratio`` of each sentence's real
(non-special, non-padding) tokens is masked, as the original's collator does, the generator predicts them
(its most likely token, as the original code's ``argmax``), and its predictions take their places. A token's
label is 1 when the edited id differs from the original, so a token the generator re-predicts correctly is
"not replaced"; special and padding tokens are -100 (never masked, never scored).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from simcse.core.errors import ConfigError, DataError

IGNORE = -100  # the label of a token a loss does not score (special and padding tokens, unmasked ones)


def bert_mask(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    probability: float,
    special: torch.Tensor,
    mask_id: int,
    vocab_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the masked copy of ``input_ids``, the chosen positions): each real, non-special token is chosen with
    ``probability``; a chosen token becomes ``mask_id`` (80%), a uniformly random id (10%) or stays (10%)."""
    maskable = attention_mask.bool() & ~torch.isin(input_ids, special)
    chosen = torch.bernoulli(torch.full(input_ids.shape, probability)).bool() & maskable
    replace = torch.bernoulli(torch.full(input_ids.shape, 0.8)).bool() & chosen
    randomize = torch.bernoulli(torch.full(input_ids.shape, 0.5)).bool() & chosen & ~replace
    random_ids = torch.randint(vocab_size, input_ids.shape, dtype=torch.long)
    masked = input_ids.clone()
    masked[replace] = mask_id
    masked[randomize] = random_ids[randomize]
    return masked, chosen


def special_ids(tokenizer: Any) -> torch.Tensor:
    """The tokenizer's special token ids, sorted, as a tensor (positions never masked or predicted)."""
    return torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)


class MLMMasker:
    """The MLM loss's inputs: ``(input_ids, attention_mask)`` -> (a masked copy, labels: the original id at
    the chosen positions, -100 elsewhere)."""

    def __init__(self, tokenizer: Any, probability: float = 0.15):
        if tokenizer.mask_token_id is None:
            raise DataError(
                getattr(tokenizer, "name_or_path", "tokenizer"), "has no [MASK] token; MLM is impossible"
            )
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special = special_ids(tokenizer)
        self.probability = probability

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ids, chosen = bert_mask(
            input_ids, attention_mask, self.probability, self.special, self.mask_id, self.vocab_size
        )
        labels = input_ids.masked_fill(~chosen, IGNORE)
        return ids, labels


def load_generator(name: str, encoder_tokenizer: Any, ratio: float) -> GeneratorEdit:
    """The frozen generator ``name`` (HF id or directory) checked against the encoder's vocabulary;
    a one-line error naming ``diffcse_generator`` when it cannot be loaded, has no MLM head, or its
    vocabulary differs."""
    from simcse.data.augment import load_mlm

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
        self.special = special_ids(tokenizer)
        self.ratio = ratio

    def to(self, device: torch.device) -> GeneratorEdit:
        """Move the generator to ``device``; the edit itself."""
        self.generator.to(device)
        return self

    def mask(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the generator's input, the chosen positions), on the inputs' device; every draw is on the CPU
        generator."""
        masked, chosen = bert_mask(
            input_ids.cpu(), attention_mask.cpu(), self.ratio, self.special, self.mask_id, self.vocab_size
        )
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
