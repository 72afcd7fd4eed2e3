"""sentence-transformers' module files (``modules.json``, ``1_Pooling``, ``2_Dense`` ...): reading a
pipeline as our pooler and MLP, and writing ours so that ``SentenceTransformer(dir)`` gives the same
embeddings.

Two layouts can be written (both are read):

- ``compatible`` (the default): the module paths and config keys that sentence-transformers 3.0.1 to 6.x all
  load (``sentence_transformers.models.Pooling``, ``word_embedding_dimension`` ...). Releases before 5.4
  import a module's path literally and pass its config to the class unchanged, so they cannot load the
  current names; 6.x maps these names to the current ones.
- ``current``: the paths and keys sentence-transformers 6 itself writes
  (``sentence_transformers.base.modules.transformer.Transformer``, ``embedding_dimension``,
  ``transformer_task`` ...), for users on 6.x who want no deprecated name in their files; 5.4+ only.

Both carry ``model_type: SentenceTransformer`` in ``config_sentence_transformers.json`` (older releases
ignore the key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from simcse.core.errors import SimCSEError
from simcse.core.files import read_json
from simcse.core.version import __version__

ST_TANH = "torch.nn.modules.activation.Tanh"
PROMPT_REFUSED = (
    "pooler prompt (a template's [MASK] state) has no sentence-transformers equivalent (its modules have no "
    "template suffix nor [MASK] pooling) and no plain Hugging Face one; nothing was written. The simcse model "
    "directory keeps the template in simcse.json: load it with simcse"
)
ST_LAYOUTS = ("compatible", "current")
_MODULE_TYPES = {
    "compatible": {
        "Transformer": "sentence_transformers.models.Transformer",
        "WeightedLayerPooling": "sentence_transformers.models.WeightedLayerPooling",
        "Pooling": "sentence_transformers.models.Pooling",
        "Dense": "sentence_transformers.models.Dense",
    },
    "current": {
        "Transformer": "sentence_transformers.base.modules.transformer.Transformer",
        "WeightedLayerPooling": "sentence_transformers.sentence_transformer.modules.weighted_layer_pooling."
        "WeightedLayerPooling",
        "Pooling": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
        "Dense": "sentence_transformers.base.modules.dense.Dense",
    },
}


def st_modules(root: Path) -> list[dict]:
    """The entries of ``root/modules.json`` sorted by ``idx`` (none without the file)."""
    path = root / "modules.json"
    if not path.exists():
        return []
    modules = read_json(path)
    if not isinstance(modules, list):
        raise SimCSEError(f"{path}: expected a list of modules")
    return sorted(modules, key=lambda m: m.get("idx", 0))


def module_kind(module: dict) -> str:
    """A module entry's class name (``sentence_transformers.models.Pooling`` -> ``Pooling``)."""
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def hf_dir_and_max_length(root: Path) -> tuple[Path, int | None]:
    """Where the HF weights of a model directory are, and its sentence-transformers max_seq_length."""
    modules = st_modules(root)
    transformer = next((m for m in modules if module_kind(m) == "Transformer"), None)
    hf_dir = root / transformer.get("path", "") if transformer else root
    max_len = None
    for candidate in (hf_dir / "sentence_bert_config.json", root / "sentence_bert_config.json"):
        if candidate.exists():
            max_len = read_json(candidate).get("max_seq_length")
            break
    return hf_dir, max_len


def describe_pipeline(root: Path, dim: int, num_layers: int) -> dict[str, Any]:
    """Translate sentence-transformers modules into our pooler / MLP description."""
    desc: dict[str, Any] = {"pooler": None, "mlp_state": None}
    layer_pooling = None
    for module in st_modules(root):
        kind = module_kind(module)
        path = root / module.get("path", "")
        if kind == "Transformer":
            continue
        if kind == "WeightedLayerPooling":
            cfg = read_json(path / "config.json")
            weights = load_file(str(path / "model.safetensors"))["layer_weights"].tolist()
            layer_pooling = (int(cfg.get("layer_start", 0)), weights)
        elif kind == "Pooling":
            cfg = read_json(path / "config.json")
            mode = cfg.get("pooling_mode")
            if isinstance(mode, list) and len(mode) == 1:  # sentence-transformers 6 allows a list of modes
                mode = mode[0]
            if mode is None:
                mode = [k for k in ("cls_token", "mean_tokens") if cfg.get(f"pooling_mode_{k}")]
                other = [
                    k for k, v in cfg.items() if k.startswith("pooling_mode_") and v and k[13:] not in mode
                ]
                if other or len(mode) != 1:
                    raise SimCSEError(f"{path}: unsupported sentence-transformers pooling {cfg}")
                mode = {"cls_token": "cls", "mean_tokens": "mean"}[mode[0]]
            if mode == "cls":
                desc["pooler"] = "cls_before_pooler"
            elif mode == "mean":
                desc["pooler"] = "avg"
            else:
                raise SimCSEError(f"{path}: unsupported sentence-transformers pooling mode {mode!r}")
        elif kind == "Dense":
            cfg = read_json(path / "config.json")
            if cfg.get("activation_function") != ST_TANH or cfg.get("in_features") != cfg.get("out_features"):
                raise SimCSEError(
                    f"{path}: only a square Linear+Tanh Dense module (SimCSE's MLP) is supported"
                )
            state = load_file(str(path / "model.safetensors"))
            desc["mlp_state"] = {"dense.weight": state["linear.weight"], "dense.bias": state["linear.bias"]}
        elif kind == "Normalize":
            continue
        else:
            raise SimCSEError(f"{root / 'modules.json'}: unsupported sentence-transformers module {kind!r}")
    if layer_pooling is not None:
        start, weights = layer_pooling
        full = [0.0] * start + list(weights)
        used = [i for i, w in enumerate(full) if w != 0]
        if len({full[i] for i in used}) > 1:  # SimCSE's layer averages weigh their two layers equally
            raise SimCSEError(f"{root}: unsupported WeightedLayerPooling weights {weights} (unequal)")
        if used == [num_layers - 1, num_layers] and desc["pooler"] == "avg":
            desc["pooler"] = "avg_top2"
        elif used == [1, num_layers] and desc["pooler"] == "avg":
            desc["pooler"] = "avg_first_last"
        elif used == [0, num_layers] and desc["pooler"] == "avg":
            desc["pooler"] = "avg_first_last_emb"
        else:
            raise SimCSEError(f"{root}: unsupported WeightedLayerPooling weights {weights}")
    if desc["mlp_state"] is not None and desc["pooler"] == "cls_before_pooler":
        desc["pooler"] = "cls"
    return desc


def check_st_layout(layout: str) -> None:
    """Raise SimCSEError unless ``layout`` is one of :data:`ST_LAYOUTS` (``compatible``, ``current``)."""
    if layout not in ST_LAYOUTS:
        raise SimCSEError(
            f"unknown sentence-transformers layout {layout!r}; choose one of {', '.join(ST_LAYOUTS)}"
        )


def _module(idx: int, kind: str, layout: str, path: str) -> dict[str, Any]:
    return {"idx": idx, "name": str(idx), "path": path, "type": _MODULE_TYPES[layout][kind]}


def _pooling_config(dim: int, is_cls: bool, layout: str) -> dict[str, Any]:
    if layout == "current":
        return {
            "embedding_dimension": dim,
            "pooling_mode": "cls" if is_cls else "mean",
            "include_prompt": True,
        }
    return {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": is_cls,
        "pooling_mode_mean_tokens": not is_cls,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }


def _transformer_config(max_length: int, layout: str) -> dict[str, Any]:
    config: dict[str, Any] = {"max_seq_length": max_length, "do_lower_case": False}
    if layout == "current":
        config = {
            "transformer_task": "feature-extraction",
            "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
            "module_output_name": "token_embeddings",
            **config,
        }
    return config


def pipeline_files(encoder: Any, layout: str = "compatible") -> dict[str, Any]:
    """sentence-transformers module files in ``layout`` (see the module docstring)."""
    check_st_layout(layout)
    dim, pooler, num_layers = encoder.dim, encoder.pooler, encoder.num_layers
    if pooler == "prompt":
        raise SimCSEError(PROMPT_REFUSED)
    modules = [_module(0, "Transformer", layout, "")]
    files: dict[str, Any] = {}
    weights: dict[str, dict[str, torch.Tensor]] = {}
    dim_key = "embedding_dimension" if layout == "current" else "word_embedding_dimension"
    if pooler in ("avg_top2", "avg_first_last", "avg_first_last_emb"):
        start = {"avg_top2": num_layers - 1, "avg_first_last": 1, "avg_first_last_emb": 0}[pooler]
        layer_weights = [0.0] * (num_layers + 1 - start)
        layer_weights[0] = layer_weights[-1] = 1.0
        modules.append(_module(1, "WeightedLayerPooling", layout, "1_WeightedLayerPooling"))
        files["1_WeightedLayerPooling/config.json"] = {
            dim_key: dim,
            "layer_start": start,
            "num_hidden_layers": num_layers,
        }
        weights["1_WeightedLayerPooling/model.safetensors"] = {"layer_weights": torch.tensor(layer_weights)}
    idx = len(modules)
    modules.append(_module(idx, "Pooling", layout, f"{idx}_Pooling"))
    files[f"{idx}_Pooling/config.json"] = _pooling_config(dim, pooler in ("cls", "cls_before_pooler"), layout)
    if encoder.mlp is not None and encoder.mlp_at_inference:
        idx = len(modules)
        modules.append(_module(idx, "Dense", layout, f"{idx}_Dense"))
        files[f"{idx}_Dense/config.json"] = {
            "in_features": dim,
            "out_features": dim,
            "bias": True,
            "activation_function": ST_TANH,
        }
        weights[f"{idx}_Dense/model.safetensors"] = {
            "linear.weight": encoder.mlp.dense.weight.detach().float().cpu().contiguous(),
            "linear.bias": encoder.mlp.dense.bias.detach().float().cpu().contiguous(),
        }
    files["modules.json"] = modules
    files["sentence_bert_config.json"] = _transformer_config(encoder.max_length, layout)
    import transformers

    files["config_sentence_transformers.json"] = {
        "__version__": {
            "simcse": __version__,
            "transformers": transformers.__version__,
            "pytorch": torch.__version__,
        },
        "model_type": "SentenceTransformer",
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    return {"json": files, "weights": weights}
