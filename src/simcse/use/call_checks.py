"""The arguments of the original tool's calls, checked as it took them: ``device`` second, counts as integers
>= 1, ``max_length=128`` told apart from an explicit 128, and MTEB's DataLoader in place of sentences; each
mistake is one line that says which argument and how to pass it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from simcse.core.errors import SimCSEError

# Keyword arguments MTEB passes to ``encode`` along with its DataLoader; they do not change the embeddings.
MTEB_KWARGS = ("task_metadata", "hf_split", "hf_subset", "prompt_type", "task_name", "request_qid")


class _DefaultLength(int):
    """The original tool's ``max_length=128`` default, told apart from an explicit 128 (``is``): by default
    ``encode`` uses ``SimCSE(max_length=...)`` when given, else 128 capped at the model's limit."""


ORIGINAL_MAX_LENGTH = _DefaultLength(128)
DEVICE_NAMES = re.compile(r"^(cpu|cuda(:\d+)?|mps|xpu(:\d+)?)$")


def not_a_device(name: str, value: Any, method: str) -> None:
    """A device name where ``name`` belongs (the original tool took ``device`` second) is an error that
    says so."""
    if isinstance(value, (str, torch.device)) and DEVICE_NAMES.match(str(value)):
        raise SimCSEError(
            f"{method}() got the device {str(value)!r} where it takes {name}; the original tool took device "
            f"second: pass device={str(value)!r} by keyword"
        )


def check_device(method: str, value: Any) -> None:
    """``device`` is the second argument, as in the original tool; anything else there (say a ``top_k`` or
    ``batch_size`` passed by position) is an error that says so."""
    if isinstance(value, torch.device) or (isinstance(value, str) and DEVICE_NAMES.match(value)):
        return
    raise SimCSEError(
        f"{method}() takes the device second, as the original tool (cpu, cuda, cuda:N, mps), got {value!r}; "
        "pass other arguments by keyword"
    )


def count(name: str, value: Any, method: str) -> int:
    """An integer argument >= 1."""
    not_a_device(name, value, method)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SimCSEError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def looks_like_mteb_loader(obj: Any) -> bool:
    """Whether ``obj`` looks like MTEB's DataLoader (iterable, with a ``dataset``) rather than sentences."""
    return hasattr(obj, "dataset") and hasattr(obj, "__iter__")


def texts_from_mteb_loader(loader: Iterable[dict]) -> list[str]:
    """The ``text`` of every batch of MTEB's loader, in order; a batch without ``text`` (an image task) is a
    SimCSEError."""
    texts: list[str] = []
    for batch in loader:
        if not isinstance(batch, dict) or "text" not in batch:
            raise SimCSEError("SimCSE encodes text only; this MTEB task gives no 'text' field")
        texts.extend(batch["text"])
    return texts
