"""What a member of the SimCSE family is to the trainer: its option fields, the checks on them, and the
pieces it adds to a run, each a method of :class:`Method` whose default adds nothing.

The trainer never branches on a method's option: it asks every enabled method, in the order of
:data:`simcse.training.methods.METHODS`, for each kind of piece, and plugs in what it gets. A method module
is torch-free at import (``simcse train --help`` lists its options without loading torch): the hooks import
torch and the components they build (losses, negative sources, heads) inside their bodies.

The pieces, in the order a run asks for them:

- :meth:`check_rows`: refuse a training file the method cannot use (it has the rows' column count);
- :meth:`extra_views`: sequences per row beyond the objective's (SimCSE++'s dropout-off copy);
- :meth:`needs_masked_lm`, :meth:`encoder_options`, :meth:`check_encoder`: how the encoder is read and made;
- :meth:`model_parts`, :meth:`projection`, :meth:`model_notes`: modules the trained model holds under a name
  (the name is the checkpoint's key), one the embeddings go through, and what to say about them;
- :meth:`pass_hook`, :meth:`dropout_off_views`, :meth:`separate_anchor`: how the model's passes over a row's
  views run;
- :meth:`aux_term`: an auxiliary loss the model computes from the batch's ``NAME_input_ids`` and
  ``NAME_labels``, with :meth:`aux_weight`;
- :meth:`collate_piece`: a change to each batch the collator makes (token ids, extra tensors);
- :meth:`batch_inputs`: tensors added to a batch on the training thread (they draw random numbers);
- :meth:`negatives`: negatives from beyond the batch (``sources``), batch candidates to drop (``filters``),
  and objects whose ``before_step(batch)`` / ``after_step()`` the loop calls (``hooks``);
- :meth:`make_loss`, :meth:`wrap_loss`: the loss in place of InfoNCE, a term added to it;
- :meth:`describe`: a line for the run's first lines on stderr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Context:
    """What the loss pieces are built from: the trained model (a piece that must be checkpointed is
    registered on it), the sequences per row as batches carry them, the device, and what each method's
    :meth:`Method.load_inputs` read, by method name."""

    model: Any
    views: int
    device: Any
    loaded: dict[str, Any] = field(default_factory=dict)


@dataclass
class Negatives:
    """A method's loss pieces: ``sources`` (callables ``views -> (M, dim)`` extra negatives), ``filters``
    (callables ``views -> (rows, candidates)`` mask of candidates to drop, or None), ``hooks`` (objects with
    ``before_step(batch)`` and ``after_step()``); see :mod:`simcse.training.negatives`."""

    sources: list[Any] = field(default_factory=list)
    filters: list[Any] = field(default_factory=list)
    hooks: list[Any] = field(default_factory=list)


class CollatePiece:
    """A method's change to every batch the collator makes (:class:`simcse.training.data.Collator`), after
    tokenisation and before padding: ``copies`` are views appended to each row as copies of those views;
    :meth:`views` changes the rows' token ids in place; :meth:`tensors` adds tensors of the rows' texts. It
    runs in the prefetch thread: a random draw comes from the row's own seeded generator."""

    copies: tuple[int, ...] = ()

    def views(self, per_row: list[list[list[int]]], keys: Any, epoch: int) -> None:
        """``per_row[i][v]``: the token ids of view ``v`` of row ``i``; ``keys``: the rows' indices in the file."""

    def tensors(self, texts: list[str], columns: int) -> dict[str, Any]:
        """``texts``: the rows' texts, row-major (``columns`` per row)."""
        return {}


class Method:
    """A member of the family; subclasses set :attr:`name`, :attr:`paper` and :attr:`Options` and override
    the hooks they need. ``config`` is the whole :class:`~simcse.training.config.TrainConfig`."""

    name = ""  # as --help and the docs name it
    paper = ""  # the work it reproduces
    Options: type | None = None  # the dataclass of its option fields, one of TrainConfig's bases

    def enabled(self, config: Any) -> bool:
        """Whether the run uses this method (its pieces are asked for only then)."""
        return False

    def problems(self, config: Any) -> list[str]:
        """What is wrong with its options, alone or with the others (enabled or not); nothing is read."""
        return []

    # ------------------------------------------------------------------ data
    def check_rows(self, config: Any, data: Any) -> None:
        """Raise a DataError naming the file when ``data`` (its ``columns``) does not suit the method."""

    def extra_views(self, config: Any) -> int:
        """Sequences per row beyond the objective's views (default none)."""
        return 0

    def load_inputs(self, config: Any) -> Any:
        """Anything the method reads before the model is built (a guide model); kept in ``Inputs.methods``."""
        return None

    # ------------------------------------------------------------------ the model
    def needs_masked_lm(self, config: Any) -> bool:
        """Whether the checkpoint must be read with its masked-language-model head (default no)."""
        return False

    def encoder_options(self, config: Any) -> dict[str, Any]:
        """Keyword arguments of :meth:`Encoder.from_backbone` (the pooler's own options)."""
        return {}

    def check_encoder(self, config: Any, encoder: Any, files: Any, limit: int | None) -> None:
        """Raise a ConfigError when the built encoder cannot run the method (``limit``: its position limit)."""

    def model_parts(self, config: Any, files: Any, encoder: Any) -> dict[str, Any]:
        """Modules the trained model holds, by attribute name; may change ``encoder`` (a part in its place)."""
        return {}

    def model_notes(self, config: Any, files: Any) -> list[str]:
        """Lines the main process prints once the model is built (what was initialised how)."""
        return []

    def projection(self, config: Any, encoder: Any) -> Any:
        """A module the embeddings of the whole batch go through in training, or None."""
        return None

    def separate_anchor(self, config: Any) -> bool:
        """Whether the anchors (view 0) go through a pass of their own."""
        return False

    def pass_hook(self, config: Any) -> Any:
        """A function ``(encoder) -> None`` called before each training pass of the model."""
        return None

    def dropout_off_views(self, config: Any, views: int) -> tuple[int, ...]:
        """Views of each row encoded in a pass of their own with dropout off."""
        return ()

    def aux_term(self, config: Any) -> tuple[str, Any] | None:
        """``(NAME, fn)``: ``fn(model, embeddings, input_ids, attention_mask, labels) -> (sum, count)`` of an
        auxiliary loss over the batch's ``NAME_input_ids`` / ``NAME_labels``."""
        return None

    def aux_weight(self, config: Any) -> float:
        """The weight of :meth:`aux_term`'s loss in the total (default 0)."""
        return 0.0

    # ------------------------------------------------------------------ batches
    def collate_piece(self, config: Any, inputs: Any, tokenizer: Any) -> CollatePiece | None:
        """Its change to every batch (``inputs``: the run's inputs; ``tokenizer``: the encoder's), or None."""
        return None

    def batch_inputs(self, config: Any, tokenizer: Any, device: Any) -> Any:
        """A function ``(batch, autocast) -> dict`` of tensors added to each batch on the training thread
        (before it goes to ``device``: the draws come from the global CPU generator, in METHODS order), or None."""
        return None

    # ------------------------------------------------------------------ the loss
    def negatives(self, config: Any, context: Context) -> Negatives | None:
        """Negatives from beyond the batch, batch candidates to drop, and the step hooks they need."""
        return None

    def make_loss(self, config: Any, scale: float, sources: list[Any], filters: list[Any]) -> Any:
        """The loss in place of SimCSE's InfoNCE (``scale``: the gradient scale over processes), or None."""
        return None

    def wrap_loss(self, config: Any, loss: Any) -> Any:
        """The loss with this method's term added (or ``loss`` unchanged)."""
        return loss

    def describe(self, config: Any) -> str | None:
        """A line for the run's first lines on stderr, or None (default)."""
        return None
