"""GraphEncoder: sentence embeddings from an exported graph, encoded as :class:`Encoder` encodes them.

The same encode loop (:class:`~simcse.modeling.sentence_encoder.TokenizedEncoder`: the directory's
tokenizer, truncation at the model's max length, length-sorted batches with dynamic padding, float32 output
in input order). It is inference-only and CPU-only: ``eval()``, ``train(False)`` and ``to("cpu")`` are
accepted, as for an Encoder that is only used to encode.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simcse.core.errors import SimCSEError
from simcse.core.files import read_json
from simcse.modeling.sentence_encoder import TokenizedEncoder

EXPORT_JSON = "simcse_export.json"
SUBDIR = {"onnx": "onnx", "openvino": "openvino"}


def export_info(directory: Path, backend: str) -> dict[str, Any]:
    """``simcse_export.json`` of ``directory``'s ``backend`` export."""
    path = directory / SUBDIR[backend] / EXPORT_JSON
    if not path.is_file():
        found = [b for b in SUBDIR if (directory / SUBDIR[b] / EXPORT_JSON).is_file()]
        also = f" (it has a {' and '.join(found)} export)" if found else ""
        raise SimCSEError(
            f"{directory}: no {backend} export here{also}; "
            f"write one with: simcse export MODEL --to {backend} DIR"
        )
    info = read_json(path)
    if not isinstance(info, dict) or info.get("backend") != backend or not isinstance(info.get("file"), str):
        raise SimCSEError(f"{path}: not a simcse export description (backend, file)")
    return info


# What ``backend="auto"`` prefers, fastest first, by CPU class (simcse.core.hardware.cpu_class): the order
# benchmarks/encode_speed.py measured on all-MiniLM-L6-v2 under ``precision auto`` (the results page's
# "Encoding speed by CPU class"): avx2 on 2026-12-07 (onnx int8 351 sentences/s, onnx 241, openvino 238, torch
# 231, openvino int8 220: its scheme there is weight-only), AVX512-VNNI with bf16 units on 2026-12-02 (openvino
# int8 1255, openvino in bf16 930, onnx int8 833, torch in bf16 773, onnx 457). A class not measured takes the
# order of its int8 class, else avx2's.
AUTO_ORDER = {
    "avx2": ("onnx int8", "onnx fp32", "openvino fp32", "torch", "openvino int8"),
    "avx512_vnni+bf16": ("openvino int8", "openvino fp32", "onnx int8", "torch", "onnx fp32"),
}


def auto_order(cpu: str) -> tuple[str, ...]:
    """The backends ``auto`` tries, fastest first, on a CPU of class ``cpu`` (:data:`AUTO_ORDER`).

    Args:
        cpu: a :func:`simcse.core.hardware.cpu_class` name, e.g. ``avx2`` or ``amx+bf16``."""
    return AUTO_ORDER.get(cpu) or AUTO_ORDER.get(cpu.split("+")[0]) or AUTO_ORDER["avx2"]


def choose_backend(model: Any) -> tuple[str, str]:
    """The backend ``auto`` means for ``model`` on this CPU: of the exports in the model's directory (each
    passed the quality guard when it was written) and torch, the fastest (:data:`AUTO_ORDER`) whose packages
    are installed and whose int8 scheme computes here as it did when it was checked.

    Args:
        model: what the API and the commands take as a model: an encoder object, a name, a path or None.

    Returns:
        ``(backend, line)``: ``torch``, ``onnx`` or ``openvino``, and one line saying which and why.
    """
    import importlib.util

    from simcse.core.hardware import cpu_class, int8_target
    from simcse.modeling.graph_runners import EXTRAS, scheme_holds_on

    here, target = cpu_class(), int8_target()
    order = auto_order(here)
    directory = Path(model).expanduser() if isinstance(model, (str, os.PathLike)) else None
    found: dict[str, str] = {"torch": "torch"}
    passed: list[str] = []
    for backend in SUBDIR:
        if directory is None or not (directory / SUBDIR[backend] / EXPORT_JSON).is_file():
            continue
        info = export_info(directory, backend)
        scheme = (info.get("int8") or {}).get("scheme") or ("int8" if info.get("quantize") else None)
        if any(importlib.util.find_spec(name) is None for name in EXTRAS[backend][:1]):
            passed.append(f"{backend} (not installed)")
        elif "guard" not in info:
            passed.append(f"{backend} (never checked)")
        elif not scheme_holds_on(scheme if scheme != "int8" else "dynamic", target):
            passed.append(f"{backend} (int8 scheme {scheme} needs VNNI or AMX)")
        else:
            found[f"{backend} {'int8' if info.get('quantize') else 'fp32'}"] = backend
    kind = next(k for k in order if k in found)
    skipped = f"; passed over {', '.join(passed)}" if passed else ""
    if len(found) == 1:
        return "torch", f"backend auto: torch (no onnx / openvino export of the model to take{skipped})"
    return found[kind], f"backend auto: {kind}, the fastest on this {here} CPU of {', '.join(found)}{skipped}"


class GraphEncoder(TokenizedEncoder):
    """An exported model run by ONNX Runtime or OpenVINO, with :class:`Encoder`'s encoding interface."""

    def __init__(
        self,
        runner: Any,
        tokenizer: Any,
        info: dict[str, Any],
        graph_file: Path,
        max_length: int | None = None,
    ):
        self.runner = runner
        self.backend = runner.backend
        self.tokenizer = tokenizer
        self.info = info
        self.graph_file = graph_file
        self.pooler = info["pooler"]
        self.mlp_at_inference = bool(info.get("mlp", False))
        self.position_limit = info.get("position_limit")
        self.source = info.get("source_dir", str(graph_file.parent.parent))
        self.max_length = int(info["max_length"])
        self.max_length = self.check_max_length(max_length)
        self._dim = int(info["dim"])
        self._fingerprint: str | None = None

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike | None,
        backend: str,
        precision: str | None = None,
        max_length: int | None = None,
    ) -> GraphEncoder:
        """The ``backend`` export in ``directory``; ``precision`` (auto | fp32 | bf16): OpenVINO's inference
        precision (auto: bf16 where the CPU has bf16 units); ONNX Runtime runs the graph as exported."""
        from transformers import AutoTokenizer

        from simcse.core.runtime import choose_precision
        from simcse.modeling.graph_runners import OnnxRunner, OpenVinoRunner

        if backend not in SUBDIR:
            raise SimCSEError(
                f"an export directory is read by the {' or '.join(SUBDIR)} backend, not {backend!r}"
            )
        if directory is None or not Path(directory).expanduser().is_dir():
            raise SimCSEError(
                f"the {backend} backend loads an export directory (simcse export MODEL --to "
                f"{backend} DIR), not {directory or 'the embedded model'}"
            )
        root = Path(directory).expanduser()
        info = export_info(root, backend)
        graph = root / SUBDIR[backend] / info["file"]
        if not graph.is_file():
            raise SimCSEError(f"{graph}: missing (named by {root / SUBDIR[backend] / EXPORT_JSON})")
        if backend == "onnx":
            if precision not in (None, "auto", "fp32"):
                raise SimCSEError(
                    f"precision {precision}: ONNX Runtime runs the exported graph as it is (fp32, or "
                    "int8 when quantised); use --backend openvino or torch for bf16"
                )
            runner = OnnxRunner(graph)
        else:
            chosen = choose_precision(precision or "auto", torch.device("cpu"), job="encoding").name
            if chosen not in ("fp32", "bf16"):
                raise SimCSEError(f"the openvino backend runs in fp32 or bf16, not {chosen}")
            runner = OpenVinoRunner(graph, chosen)
        tokenizer = AutoTokenizer.from_pretrained(str(root))
        return cls(runner, tokenizer, info | {"source_dir": str(root)}, graph, max_length)

    # ------------------------------------------------------------------ Encoder's interface
    @property
    def dim(self) -> int:
        """The embedding dimension, as the export recorded it."""
        return self._dim

    @property
    def device(self) -> torch.device:
        """Always the CPU."""
        return torch.device("cpu")

    @property
    def precision(self) -> str:
        """What the graph computes in: ``fp32`` / ``bf16`` (OpenVINO's hint), with ``int8`` when quantised."""
        return ("int8 + " if self.info.get("quantize") else "") + self.runner.precision

    @property
    def line(self) -> str:
        """The job's line on what runs (as :class:`~simcse.core.runtime.Precision`'s)."""
        return f"backend {self.backend}, {self.info['file']} in {self.precision}"

    @property
    def inference_pooler(self) -> str:
        """The pooler in the graph, as the export recorded it."""
        return self.pooler

    def to(self, device: str | torch.device | Any) -> GraphEncoder:
        """Itself for the CPU; any other device is a SimCSEError (the graph runs on the CPU)."""
        if torch.device(device).type != "cpu":
            raise SimCSEError(f"the {self.backend} backend runs on the CPU, not {device}")
        return self

    def eval(self) -> GraphEncoder:
        """Itself (a graph has no training mode)."""
        return self

    def train(self, mode: bool = True) -> GraphEncoder:
        """Itself for ``mode`` False; True is a SimCSEError (train the torch model)."""
        if mode:
            raise SimCSEError(f"an exported {self.backend} model cannot be trained; train the torch model")
        return self

    def describe(self) -> dict[str, Any]:
        """What the encoder is, as :meth:`~simcse.modeling.encoder.Encoder.describe` says it, plus the
        backend, the graph file and its precision."""
        return {
            "pooler": self.pooler,
            "mlp": self.mlp_at_inference,
            "max_length": self.max_length,
            "dim": self.dim,
            "source": self.source,
            "backend": self.backend,
            "graph": self.info["file"],
            "precision": self.precision,
        }

    def fingerprint(self) -> str:
        """A short hash of the graph file (and weights file beside it) and the pooling setup."""
        if self._fingerprint is None:
            h = hashlib.sha256(f"{self.backend}|{self.pooler}|{self.max_length}".encode())
            for path in sorted(self.graph_file.parent.glob(self.graph_file.stem + ".*")):
                with path.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    @contextlib.contextmanager
    def batch_runner(self, dtype: torch.dtype | None) -> Iterator[Callable[[dict], torch.Tensor]]:
        """The graph on each batch; ``dtype`` is accepted and ignored: the graph's precision was fixed when it
        was exported and loaded (:attr:`runner`'s ``precision``)."""

        def run(batch: dict) -> torch.Tensor:
            out = self.runner(batch["input_ids"].numpy(), batch["attention_mask"].numpy())
            return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

        yield run

    def encoding_precision(self, precision: str | None, dtype: torch.dtype | None) -> tuple[Any, str | None]:
        """``(None, line)`` whatever is asked: the graph's precision is fixed (:attr:`line` says it)."""
        return None, self.line
