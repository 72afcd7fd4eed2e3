"""The prompt pooler (PromptBERT, Jiang et al. 2022): the sentence is put in a template such as
``This sentence : "[X]" means [MASK] .`` and the last layer's hidden state at the template's [MASK] is the
embedding.

Insertion is at the token level, as the paper's code does: the template's tokens before and after ``[X]``
are tokenized once, the sentence's tokens are placed between them, and only the sentence is truncated, so
the template always survives a length limit. The [MASK] position follows from the template and the
sentence's length (never from searching the ids: a sentence may itself contain the mask token).

Template denoising: the template with the sentence removed, run with the position ids it has around a
sentence of length L (the tokens after ``[X]`` shifted by L, so its [MASK] sits where the sentence's does),
gives the template's own [MASK] state; it is subtracted from the sentence's. The paper subtracts it in
training, with gradients and dropout like the sentence pass (``prompt_denoise: train``), and encodes the
trained model without it; ``always`` subtracts it at inference too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from simcse.core.errors import SimCSEError
from simcse.modeling.prompt_templates import MASK_SLOT, check_denoise, check_templates, template_parts
from simcse.modeling.sentence_encoder import token_ids

HiddenFn = Callable[..., dict[int, torch.Tensor]]


@dataclass(frozen=True)
class TokenTemplate:
    """One template as token ids: ``head + before + SENTENCE + after + tail`` (head and tail: the tokenizer's
    special tokens, e.g. [CLS] and [SEP]); the [MASK] is at ``mask_index`` of ``before`` or of ``after``."""

    text: str
    head: tuple[int, ...]
    before: tuple[int, ...]
    after: tuple[int, ...]
    tail: tuple[int, ...]
    mask_after: bool  # the [MASK] follows the sentence (it moves with the sentence's length)
    mask_index: int

    @property
    def length(self) -> int:
        """Tokens of the template alone (the sentence removed)."""
        return len(self.head) + len(self.before) + len(self.after) + len(self.tail)

    @property
    def sentence_start(self) -> int:
        """The position of the sentence's first token in a wrapped sequence."""
        return len(self.head) + len(self.before)

    def wrap(self, sentence: Sequence[int]) -> list[int]:
        """``sentence``'s token ids put in the template, special tokens included."""
        return [*self.head, *self.before, *sentence, *self.after, *self.tail]

    def mask_position(self, sentence_length: int) -> int:
        """The position of the [MASK] in the wrapped sequence of a sentence of ``sentence_length`` tokens."""
        if self.mask_after:
            return self.sentence_start + sentence_length + self.mask_index
        return len(self.head) + self.mask_index


def token_template(tokenizer: Any, text: str, option: str = "prompt_template") -> TokenTemplate:
    """``text`` tokenized for ``tokenizer``; its ``[MASK]`` becomes the tokenizer's own mask token."""
    mask_id = tokenizer.mask_token_id
    before_text, after_text = template_parts(text, option)
    pieces = []
    for part in (before_text, after_text):
        part = part.replace(MASK_SLOT, tokenizer.mask_token)
        pieces.append(tuple(tokenizer(part, add_special_tokens=False)["input_ids"]) if part else ())
    before, after = pieces
    found = before.count(mask_id) + after.count(mask_id)
    if found != 1:
        raise SimCSEError(f"{option} {text!r}: the tokenizer turns it into {found} mask tokens, not one")
    # the special tokens around a sequence ([CLS] ... [SEP], <s> ... </s>), as the tokenizer adds them
    probe = list(tokenizer(tokenizer.mask_token, add_special_tokens=True)["input_ids"])
    if probe.count(mask_id) != 1:
        raise SimCSEError(
            f"{option}: the tokenizer does not keep its mask token {tokenizer.mask_token!r} as one token"
        )
    at = probe.index(mask_id)
    mask_after = mask_id in after
    index = after.index(mask_id) if mask_after else before.index(mask_id)
    return TokenTemplate(text, tuple(probe[:at]), before, after, tuple(probe[at + 1 :]), mask_after, index)


class Prompt:
    """The templates (the first encodes; in training view ``v`` of a row uses template ``min(v, n - 1)``),
    whether to denoise, and the model's position-id offset (RoBERTa-style models count from
    ``padding_idx + 1``)."""

    def __init__(
        self,
        tokenizer: Any,
        templates: str | Sequence[str],
        denoise: str = "none",
        position_offset: int = 0,
        source: str = "the model",
    ):
        if tokenizer.mask_token_id is None:
            raise SimCSEError(
                f"{source}: pooler prompt needs a tokenizer with a mask token ([MASK] / <mask>); "
                "this one has none"
            )
        self.denoise = check_denoise(denoise)
        self.templates = [token_template(tokenizer, t) for t in check_templates(templates)]
        self.position_offset = position_offset
        self.pad_token_id = tokenizer.pad_token_id

    @property
    def texts(self) -> list[str]:
        """The templates as text, the encoding one first."""
        return [t.text for t in self.templates]

    def describe(self) -> dict[str, Any]:
        """The prompt options as a model directory saves them (``prompt_template``, ``prompt_denoise``)."""
        return {"prompt_template": self.texts, "prompt_denoise": self.denoise}

    def view_template(self, view: int) -> int:
        """The template index of training view ``view``: its own, or the last one when there are fewer
        templates."""
        return min(view, len(self.templates) - 1)

    # ------------------------------------------------------------------ tokens
    def sentence_room(self, max_length: int, template: int = 0) -> int:
        """Tokens left for the sentence within ``max_length``; an error when none is left."""
        t = self.templates[template]
        room = max_length - t.length
        if room < 1:
            raise SimCSEError(
                f"max_length {max_length} leaves no room for the sentence in the template "
                f"{t.text!r} ({t.length} tokens)"
            )
        return room

    def tokenize(
        self, tokenizer: Any, sentences: Sequence[str], max_length: int, template: int = 0
    ) -> list[list[int]]:
        """Each sentence in the template, truncated so that the whole fits ``max_length`` tokens."""
        room = self.sentence_room(max_length, template)
        ids = token_ids(tokenizer, list(sentences), room, special=False)
        return [self.templates[template].wrap(s) for s in ids]

    # ------------------------------------------------------------------ pooling
    def _table(self, values: list[int], device: torch.device) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    def sentence_lengths(self, attention_mask: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        """Each sequence's sentence length in tokens: its unpadded length minus its template's (``template``:
        each sequence's template index)."""
        lengths = self._table([t.length for t in self.templates], attention_mask.device)
        return attention_mask.sum(1).long() - lengths[template]

    def mask_positions(self, sentence_lengths: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        """Where each sequence's template [MASK] is (``template``: each sequence's template index)."""
        device = sentence_lengths.device
        fixed = self._table([t.mask_position(0) for t in self.templates], device)
        moves = self._table([int(t.mask_after) for t in self.templates], device)
        return fixed[template] + moves[template] * sentence_lengths

    def denoises(self, training: bool) -> bool:
        """Whether the template's own [MASK] state is subtracted: always with ``always``, in training only
        with ``train``."""
        return self.denoise == "always" or (self.denoise == "train" and training)

    def pool(
        self,
        hidden_states: HiddenFn,
        last: torch.Tensor,
        attention_mask: torch.Tensor,
        template: torch.Tensor | None,
        layer: int,
        training: bool,
    ) -> torch.Tensor:
        """The [MASK] states (batch, dim) of ``last`` (the last layer), the template's own subtracted when
        denoising; ``hidden_states(input_ids, attention_mask, position_ids)`` runs the backbone."""
        if template is None:
            template = torch.zeros(last.shape[0], dtype=torch.long, device=last.device)
        template = template.to(last.device).long()
        lengths = self.sentence_lengths(attention_mask, template)
        if bool((lengths < 0).any()):
            raise SimCSEError(
                "pooler prompt: a sequence is shorter than its template; tokenize with the encoder"
            )
        rows = torch.arange(last.shape[0], device=last.device)
        pooled = last[rows, self.mask_positions(lengths, template)]
        if self.denoises(training):
            pooled = pooled - self.template_bias(hidden_states, template, lengths, layer).to(pooled.dtype)
        return pooled

    def template_inputs(self, pairs: list[tuple[int, int]], device: torch.device) -> dict[str, torch.Tensor]:
        """The templates alone for (template, sentence length) pairs: ids, attention mask, position ids
        (those after the sentence's slot shifted by its length) and the [MASK] positions."""
        longest = max(self.templates[t].length for t, _ in pairs)
        ids = torch.full((len(pairs), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(pairs), longest), dtype=torch.long)
        positions = torch.zeros((len(pairs), longest), dtype=torch.long)
        where = []
        for i, (t, length) in enumerate(pairs):
            tt = self.templates[t]
            ids[i, : tt.length] = torch.tensor(tt.wrap([]))
            mask[i, : tt.length] = 1
            steps = torch.arange(tt.length)
            positions[i, : tt.length] = self.position_offset + steps + length * (steps >= tt.sentence_start)
            where.append(tt.mask_position(0))
        return {
            "input_ids": ids.to(device),
            "attention_mask": mask.to(device),
            "position_ids": positions.to(device),
            "mask_positions": torch.tensor(where, device=device),
        }

    def template_bias(
        self, hidden_states: HiddenFn, template: torch.Tensor, lengths: torch.Tensor, layer: int
    ) -> torch.Tensor:
        """The template's own [MASK] state for each sequence's (template, sentence length), one pass over
        the distinct pairs (sorted, so a replayed pass draws the same dropout masks)."""
        pairs, inverse = torch.unique(torch.stack([template, lengths], 1), dim=0, return_inverse=True)
        batch = self.template_inputs([(int(t), int(n)) for t, n in pairs.tolist()], template.device)
        last = hidden_states(batch["input_ids"], batch["attention_mask"], batch["position_ids"])[layer]
        bias = last[torch.arange(last.shape[0], device=last.device), batch["mask_positions"]]
        return bias[inverse]
