"""Encoder: a Hugging Face encoder plus a pooler (and SimCSE's MLP head), with encode/save/load.

A saved encoder is one self-describing directory:

- Hugging Face weights (``model.safetensors``, ``config.json``) and tokenizer files at the top level, so
  ``AutoModel.from_pretrained(dir)`` works; when the model uses the MLP at inference, the MLP is also
  written into BERT's ``pooler.dense`` so ``pooler_output`` is the SimCSE embedding (as in the released
  princeton-nlp checkpoints);
- sentence-transformers module files (``modules.json``, ``1_Pooling``, ``2_Dense`` ...), so
  ``SentenceTransformer(dir)`` gives the same embeddings;
- ``simcse.json``: pooler, MLP use, max length, training config and scores (see :mod:`simcse.modeling.model_dir`).

The ``prompt`` pooler (PromptBERT) is the exception: sentence-transformers cannot express it, so its
directory has no module files and ``simcse.json`` also holds the template (:mod:`simcse.modeling.prompt`).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simcse.core.errors import SimCSEError
from simcse.modeling.model_dir import (
    LoadedBackbone,
    position_limit,
    position_offset,
    read_model_dir,
    write_model_dir,
)
from simcse.modeling.packed import packed_hidden_states, supports_packing
from simcse.modeling.pooling import MLP, POOLERS, layers_needed, pool
from simcse.modeling.prompt import Prompt
from simcse.modeling.prompt_templates import TRAINING_FREE_TEMPLATE
from simcse.modeling.sentence_encoder import TokenizedEncoder

logger = logging.getLogger(__name__)

# the fixed sentences on which a bf16 copy of the weights must agree with fp32 before it encodes anything
GUARD_SENTENCES = (
    "A man is playing a guitar.",
    "Two dogs run in the park, chasing a red ball across the wet grass.",
    "Hello!",
    "The central bank raised interest rates by a quarter of a percentage point on Tuesday.",
    "She did not like the movie at all.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "what time is it",
    "A woman slices an onion on a wooden cutting board in a small kitchen.",
)
MIN_GUARD_COSINE = 0.99


class Encoder(nn.Module, TokenizedEncoder):  # nn.Module first: its to() / eval() / train() win
    """A sentence encoder: backbone (any ``AutoModel``), pooler, optional SimCSE MLP; usually made by
    :meth:`load` or, for training, :meth:`from_backbone`. Training always applies the MLP when there is one;
    :meth:`encode` only with ``mlp_at_inference``.

    Args:
        backbone: the Hugging Face encoder.
        tokenizer: its tokenizer.
        pooler: one of :data:`~simcse.modeling.names.POOLERS` (``prompt``: PromptBERT, see :attr:`prompt`).
        mlp: SimCSE's MLP head, or None.
        mlp_at_inference: whether eval mode (so :meth:`encode`) applies the MLP (False: ``mlp_only_train``).
        max_length: the default truncation, in tokens.
        packed: unpadded execution, where supported: None on CPUs only, True on every device, False never.
        source: the model's name or path, for messages and :meth:`describe`.
        pooler_state: the checkpoint's own pretrained pooler layer (not trained here), written back on save.
        prompt_template: pooler prompt: a template, two joined by ``||``, or a list (None: training-free).
        prompt_denoise: pooler prompt: none (default) | train | always; needs a model that takes position ids.
    """

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: Any,
        pooler: str,
        mlp: MLP | None = None,
        mlp_at_inference: bool = True,
        max_length: int = 512,
        packed: bool | None = None,
        source: str = "",
        pooler_state: dict[str, torch.Tensor] | None = None,
        prompt_template: str | Sequence[str] | None = None,
        prompt_denoise: str | None = None,
    ):
        super().__init__()
        if pooler not in POOLERS:
            raise SimCSEError(f"unknown pooler {pooler!r}; choose one of {', '.join(POOLERS)}")
        self.prompt = None
        if pooler == "prompt":
            self.prompt = Prompt(
                tokenizer,
                prompt_template or TRAINING_FREE_TEMPLATE,
                prompt_denoise or "none",
                position_offset(backbone.config),
                source or "the model",
            )
            if (
                self.prompt.denoise != "none"
                and "position_ids" not in inspect.signature(backbone.forward).parameters
            ):
                raise SimCSEError(
                    f"{source or 'the model'}: prompt_denoise needs position ids, which a "
                    f"{backbone.config.model_type} model does not take; set prompt_denoise none"
                )
        elif prompt_template or prompt_denoise not in (None, "none"):
            raise SimCSEError("prompt_template and prompt_denoise apply to pooler prompt only")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooler = pooler
        self.mlp = mlp
        self.mlp_at_inference = mlp_at_inference and mlp is not None
        self.max_length = max_length
        self.packed = supports_packing(backbone) if packed is None else packed and supports_packing(backbone)
        # auto (None) packs on CPUs only: on GPUs the unpadded layout's data-dependent shapes cost a host sync
        # per layer stack and padded SDPA kernels are cheap; packed=True forces it everywhere.
        self.packed_on_gpu = packed is True
        self.source = source
        # The checkpoint's own pretrained pooler layer (not trained here), written back on save.
        self.pooler_state = pooler_state
        self.num_layers = int(backbone.config.num_hidden_layers)
        self.position_limit = position_limit(backbone.config)  # the longest input the model can take
        self._layers = layers_needed(pooler, self.num_layers)

    # ------------------------------------------------------------------ forward
    @property
    def dim(self) -> int:
        """The embedding dimension (the backbone's hidden size)."""
        return int(self.backbone.config.hidden_size)

    @property
    def device(self) -> torch.device:
        """The device of the backbone's weights."""
        return next(self.backbone.parameters()).device

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> dict[int, torch.Tensor]:
        """The token states (batch, length, dim) of the layers the pooler needs, by layer index (0: the
        embeddings).

        Args:
            input_ids: token ids (batch, length).
            attention_mask: 1 for tokens, 0 for padding (batch, length).
            position_ids: explicit positions (template denoising), or None for the model's own."""
        if self.packed and (self.packed_on_gpu or input_ids.device.type == "cpu"):
            return packed_hidden_states(self.backbone, input_ids, attention_mask, self._layers, position_ids)
        need_all = self._layers != (self.num_layers,)
        extra = {} if position_ids is None else {"position_ids": position_ids}
        out = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=need_all, **extra
        )
        if not need_all:
            return {self.num_layers: out.last_hidden_state}
        return {i: out.hidden_states[i] for i in self._layers}

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        with_mlp: bool | None = None,
        template: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sentence embeddings (batch, dim), in the weights' precision.

        Args:
            input_ids: token ids (batch, length).
            attention_mask: 1 for tokens, 0 for padding.
            with_mlp: apply the MLP; None: in training mode, and in eval mode only when ``mlp_at_inference``.
            template: pooler prompt: each sequence's template index (None: the first, the one :meth:`tokenize`
                uses)."""
        hidden = self.hidden_states(input_ids, attention_mask)
        if self.prompt is not None:
            pooled = self.prompt.pool(
                self.hidden_states,
                hidden[self.num_layers],
                attention_mask,
                template,
                self.num_layers,
                self.training,
            )
        else:
            pooled = pool(self.pooler, hidden, attention_mask, self.num_layers)
        if with_mlp is None:
            with_mlp = self.training or self.mlp_at_inference
        if with_mlp and self.mlp is not None:
            pooled = self.mlp(pooled)
        return pooled

    # ------------------------------------------------------------------ encode
    @contextlib.contextmanager
    def batch_runner(self, dtype: torch.dtype | None) -> Iterator[Callable[[dict], torch.Tensor]]:
        """Eval mode and inference mode; on a CPU in bf16 the bf16 copy of the weights (:meth:`in_dtype`),
        elsewhere autocast to ``dtype``; train mode is restored after.

        Args:
            dtype: the precision to run in (None or float32: the weights' own); the outputs are float32."""
        was_training = self.training
        self.eval()
        device = self.device
        try:
            with torch.inference_mode():
                model, autocast = self, contextlib.nullcontext()
                if dtype is not None and dtype != torch.float32:
                    if device.type == "cpu" and dtype == torch.bfloat16:
                        model = self.in_dtype(dtype) or self  # None: the guard kept fp32
                    else:
                        autocast = torch.autocast(device.type, dtype=dtype)
                with autocast:
                    yield lambda batch: model(
                        batch["input_ids"].to(device, non_blocking=True),
                        batch["attention_mask"].to(device, non_blocking=True),
                    ).float()
        finally:
            self.train(was_training)

    def in_dtype(self, dtype: torch.dtype) -> Encoder | None:
        """A copy of this encoder with its weights in ``dtype`` (bf16), for encoding on CPUs: bf16 weights run
        faster than autocast, which recasts every weight on every call (measured with AMX: 2.7x vs 1.7x fp32).
        Kept until a weight changes (training), so it costs the memory of the weights in ``dtype``.

        Before first use the copy must agree with fp32 on :data:`GUARD_SENTENCES` (mean cosine >=
        :data:`MIN_GUARD_COSINE`); a model that loses more in bf16 encodes in fp32, with a warning (None).

        A weight change is seen through the tensors' version counters, which fused optimisers (torch's
        ``AdamW(fused=True)``) do not bump: whoever updates weights that way calls :meth:`weights_changed`
        (the trainer does it after every optimiser step).

        Args:
            dtype: the copy's dtype."""
        key = (dtype, self.device, tuple((p.data_ptr(), p._version) for p in self.parameters()))
        cached = self.__dict__.get("_twin")
        if cached is not None and cached[0] == key:
            return cached[1]
        self.__dict__.pop("_twin", None)
        try:
            twin = copy.deepcopy(self, {id(self.tokenizer): self.tokenizer}).to(dtype).eval()
        except Exception as exc:  # e.g. a torch.compile'd backbone
            logger.warning("%s: no bf16 copy of the weights (%s): encoding in fp32", self.source, exc)
            self.__dict__["_twin"] = (key, None)
            return None
        tokens = self.tokenize(list(GUARD_SENTENCES))
        reference = self.encode_tokenized(tokens, len(GUARD_SENTENCES), normalize=True)
        got = twin.encode_tokenized(tokens, len(GUARD_SENTENCES), normalize=True)
        cosine = float((reference * got).sum(-1).mean())
        if not cosine >= MIN_GUARD_COSINE:
            logger.warning(
                "%s: bf16 weights lose too much on this model (mean cosine %.4f to fp32 on the guard "
                "sentences, below %.2f): encoding in fp32",
                self.source,
                cosine,
                MIN_GUARD_COSINE,
            )
            twin = None
        self.__dict__["_twin"] = (key, twin)
        return twin

    def encoding_precision(self, precision: str | None, dtype: torch.dtype | None) -> tuple[Any, str | None]:
        """(dtype, the line saying which and why): ``dtype`` when given, else what ``precision`` picks on this
        device.

        Args:
            precision: auto | fp32 | bf16 | fp16 (None: auto).
            dtype: a torch dtype that overrides ``precision``."""
        from simcse.core.runtime import encoding_precision

        return encoding_precision(precision, self.device, dtype)

    def weights_key(self) -> tuple:
        """Changes whenever a weight tensor is replaced or modified in place (a cache of the fingerprint)."""
        return tuple((name, t.data_ptr(), t._version) for name, t in self.state_dict().items())

    def weights_changed(self) -> None:
        """Drop the bf16 copy of the weights (:meth:`in_dtype`): the next bf16 encoding copies them again."""
        self.__dict__.pop("_twin", None)

    def fingerprint(self) -> str:
        """A short hash of the weights and pooling setup (keys embedding caches)."""
        import hashlib

        h = hashlib.sha256(f"{self.pooler}|{self.mlp_at_inference}|{self.max_length}".encode())
        if self.prompt is not None:
            h.update(repr(self.prompt.describe()).encode())
        for name, t in self.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ save / load
    def save(
        self,
        path: str | os.PathLike,
        extra: dict | None = None,
        readme: str | None = None,
        st_layout: str = "compatible",
    ) -> Path:
        """Write the self-describing model directory (see the module docstring) and return its path.

        Args:
            path: the directory, written beside it first and swapped into place atomically.
            extra: facts recorded in ``simcse.json`` besides the encoder's own (the trainer's config and
                scores).
            readme: the model card's text, or None for none.
            st_layout: ``compatible`` (sentence-transformers 3.0.1 to 6 load it) or ``current`` (6.x's own
                names)."""
        return write_model_dir(self, Path(path), extra or {}, readme, st_layout)

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike | None = None,
        pooler: str | None = None,
        *,
        max_length: int | None = None,
        packed: bool | None = None,
        attn_implementation: str | None = "sdpa",
        device: str | torch.device | None = None,
        plain_pooler: str = "cls",
        prompt_template: str | Sequence[str] | None = None,
        prompt_denoise: str | None = None,
    ) -> Encoder:
        """Load a saved simcse model, a sentence-transformers directory or any HF model, in eval mode.

        Args:
            name_or_path: a directory or hub id; None or ``default``: the embedded all-MiniLM-L6-v2.
            pooler: overrides the stored pooler (``cls`` needs an MLP: a Dense module or a pretrained pooler
                layer).
            max_length: the default truncation (None: the one saved in simcse.json, else the model's own
                limit, at most 512); refused beyond its position limit.
            packed: unpadded execution (see the class); None: on CPUs, where the model supports it.
            attn_implementation: transformers' attention (``sdpa``, ``eager``).
            device: where to put the weights (None: where they load, the CPU).
            plain_pooler: the pooler of a plain HF model, which names none: ``cls`` (default) is the model's
                own pretrained pooler layer (``pooler_output``, as SimCSE's evaluation script does).
            prompt_template: pooler prompt: overrides the saved template(s) (default the paper's training-free
                one).
            prompt_denoise: pooler prompt: overrides the saved denoising (default none)."""
        for value in (pooler, plain_pooler):
            if value is not None and value not in POOLERS:
                raise SimCSEError(f"unknown pooler {value!r}; choose one of {', '.join(POOLERS)}")
        saved = read_model_dir(name_or_path, attn_implementation=attn_implementation)
        files = saved.files
        chosen = pooler or (saved.pooler if saved.pooler_named else plain_pooler)
        mlp = None
        if chosen == "cls":
            # A Dense module (SimCSE's MLP) if the model has one, else the checkpoint's pretrained pooler
            # layer, which is where princeton-nlp's released SimCSE checkpoints keep their MLP.
            state = saved.mlp_state if saved.mlp_state is not None else files.pooler_state
            if state is None:
                raise SimCSEError(
                    f"{files.source}: pooler 'cls' needs an MLP (a Dense module or a pretrained pooler layer) "
                    "and this model has none; choose another pooler (cls_before_pooler, avg, avg_top2, "
                    "avg_first_last)"
                )
            mlp = MLP.from_state(int(files.backbone.config.hidden_size), state, files.source)
        enc = cls(
            files.backbone,
            files.tokenizer,
            chosen,
            mlp=mlp,
            mlp_at_inference=mlp is not None,
            max_length=max_length or saved.max_length or files.max_length,
            packed=packed,
            source=files.source,
            pooler_state=files.pooler_state,
            **_prompt_options(chosen, saved.prompt, prompt_template, prompt_denoise),
        )
        enc.eval()
        enc.check_max_length(max_length)
        if device is not None:
            enc.to(device)
        return enc

    @classmethod
    def from_backbone(
        cls,
        files: LoadedBackbone,
        pooler: str = "cls",
        mlp_only_train: bool = False,
        max_length: int | None = None,
        packed: bool | None = None,
        prompt_template: str | Sequence[str] | None = None,
        prompt_denoise: str | None = None,
    ) -> Encoder:
        """An encoder for training, with a freshly initialised MLP when the pooler is ``cls``, or ``prompt``
        with ``mlp_only_train`` (PromptBERT's MLP on the [MASK] state in training only).

        Args:
            files: the backbone, tokenizer and facts read by :func:`~simcse.modeling.model_dir.read_backbone`.
            pooler: the pooler to train.
            mlp_only_train: train with the MLP, encode without it (the paper's unsup setting).
            max_length: the default truncation (None: the model's).
            packed: unpadded execution (see the class).
            prompt_template: pooler prompt: the template(s).
            prompt_denoise: pooler prompt: none | train | always."""
        config = files.backbone.config
        mlp = None
        if pooler == "cls" or (pooler == "prompt" and mlp_only_train):
            mlp = MLP(int(config.hidden_size), float(getattr(config, "initializer_range", 0.02)))
        return cls(
            files.backbone,
            files.tokenizer,
            pooler,
            mlp=mlp,
            mlp_at_inference=not mlp_only_train,
            max_length=max_length or files.max_length,
            packed=packed,
            source=files.source,
            pooler_state=files.pooler_state,
            prompt_template=prompt_template,
            prompt_denoise=prompt_denoise,
        )

    @property
    def inference_pooler(self) -> str:
        """The pooler as used by :meth:`encode`: ``cls`` without its MLP is ``cls_before_pooler``."""
        return "cls_before_pooler" if self.pooler == "cls" and not self.mlp_at_inference else self.pooler

    def describe(self) -> dict[str, Any]:
        """What the encoder is, as ``simcse.json`` and an index's ``model.json`` record it: pooler (as
        :meth:`encode` applies it), MLP, max length, dim, source and the prompt options."""
        return {
            "pooler": self.inference_pooler,
            "mlp": self.mlp is not None and self.mlp_at_inference,
            "max_length": self.max_length,
            "dim": self.dim,
            "source": self.source,
            **(self.prompt.describe() if self.prompt is not None else {}),
        }


def _prompt_options(pooler: str, saved: dict | None, template: Any, denoise: str | None) -> dict[str, Any]:
    """The prompt options a loaded encoder gets: the given ones, else the saved ones (pooler prompt only)."""
    if pooler != "prompt":
        return {"prompt_template": template, "prompt_denoise": denoise}  # refused unless both unset
    saved = saved or {}
    return {
        "prompt_template": template or saved.get("prompt_template"),
        "prompt_denoise": denoise or saved.get("prompt_denoise"),
    }
