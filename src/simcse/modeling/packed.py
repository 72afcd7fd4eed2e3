"""Unpadded ("packed") execution of BERT-style encoders.

Sentences in a SimCSE batch are padded to the longest one (32 tokens at the paper's settings) while the
average Wikipedia sentence has ~22 tokens, so a third of the dense-layer work of a padded forward pass is
spent on padding. Here the dense layers (QKV, attention output, feed-forward) and the layer norms run on the
real tokens only, packed into one (tokens, dim) matrix; only attention itself runs on the padded layout.

It calls the model's own modules (same weights, same dropout modules, same order of random draws per
module), so results equal the padded Hugging Face forward pass up to float rounding, and a checkpoint is an
ordinary Hugging Face checkpoint. Architectures outside the supported family fall back to the HF forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PACKED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")
# In training, the packed row count is rounded up to a multiple of this (with padding positions, which are
# computed and ignored). Without it every step allocates activations of a new size and glibc's heap
# fragments: the resident size of CPU training grew by ~700 MB over 60 steps; with it, it stays flat.
ROW_BUCKET = 256


def supports_packing(model: nn.Module) -> bool:
    """Whether ``model`` can run unpadded (:func:`packed_hidden_states`): a BERT-style encoder of a known type
    (not a decoder, no chunked feed-forward, absolute positions) whose layers have the expected parts."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in PACKED_MODEL_TYPES:
        return False
    if getattr(config, "is_decoder", False) or getattr(config, "chunk_size_feed_forward", 0):
        return False
    if getattr(config, "position_embedding_type", "absolute") not in ("absolute", None):
        return False
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not layers or not hasattr(model, "embeddings"):
        return False
    layer = layers[0]
    try:
        parts = (
            layer.attention.self.query,
            layer.attention.self.key,
            layer.attention.self.value,
            layer.attention.output.dense,
            layer.attention.output.LayerNorm,
            layer.intermediate.dense,
            layer.intermediate.intermediate_act_fn,
            layer.output.dense,
            layer.output.LayerNorm,
        )
    except AttributeError:
        return False
    return all(p is not None for p in parts)


def _layer_forward(
    layer: nn.Module,
    x: torch.Tensor,
    index: torch.Tensor,
    key_mask: torch.Tensor,
    shape: tuple[int, int],
) -> torch.Tensor:
    batch, length = shape
    sa = layer.attention.self
    dim = x.shape[-1]
    heads = sa.num_attention_heads
    weight = torch.cat([sa.query.weight, sa.key.weight, sa.value.weight], 0)
    bias = torch.cat([sa.query.bias, sa.key.bias, sa.value.bias], 0)
    qkv = F.linear(x, weight, bias)
    padded = qkv.new_zeros(batch * length, 3 * dim).index_copy(0, index, qkv)
    q, k, v = padded.view(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4).unbind(0)
    if sa.training and sa.dropout.p > 0:
        # SDPA would draw its own dropout mask; this is its math path with the model's dropout module.
        scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
        scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
        context = sa.dropout(scores.softmax(-1)) @ v
    else:
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
    context = context.transpose(1, 2).reshape(batch * length, dim).index_select(0, index)

    ao = layer.attention.output
    h = ao.LayerNorm(ao.dropout(ao.dense(context)) + x)
    inter = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(h))
    out = layer.output
    return out.LayerNorm(out.dropout(out.dense(inter)) + h)


def packed_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layers: tuple[int, ...],
    position_ids: torch.Tensor | None = None,
) -> dict[int, torch.Tensor]:
    """Hidden states (batch, length, dim) of the requested layers; padding positions hold arbitrary values
    (every pooler masks them). ``position_ids``: None = the model's own (the prompt pooler's denoising
    passes shifted ones)."""
    batch, length = input_ids.shape
    embeddings = model.embeddings(input_ids=input_ids, position_ids=position_ids)
    dim = embeddings.shape[-1]
    mask = attention_mask.bool()
    key_mask = mask[:, None, None, :]
    rows = mask.reshape(-1)
    # Training mode, not grad mode: GradCache's no-grad pass must draw dropout masks of the same shapes.
    extra = -int(rows.sum()) % ROW_BUCKET if model.training else 0
    if extra:
        rows = rows.clone()
        rows[(~rows).nonzero().squeeze(1)[:extra]] = True
    index = rows.nonzero().squeeze(1)
    x = embeddings.reshape(batch * length, dim).index_select(0, index)

    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t.new_zeros(batch * length, dim).index_copy(0, index, t).view(batch, length, dim)

    wanted = set(layers)
    out: dict[int, torch.Tensor] = {}
    if 0 in wanted:
        out[0] = unpack(x)
    for i, layer in enumerate(model.encoder.layer, start=1):
        x = _layer_forward(layer, x, index, key_mask, (batch, length))
        if i in wanted:
            out[i] = unpack(x)
        if len(out) == len(wanted):
            break
    return out
