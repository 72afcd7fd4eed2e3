"""The process a job runs in: its place among torchrun's processes (one ``Dist`` for training and corpus
encoding alike), its device and numeric precision, and seeding.

Training and ``simcse encode`` both run under torchrun; before this module each had its own copy of the
process-group helper, and they had drifted apart (timeouts, who tears the group down).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from simcse.core.errors import ConfigError
from simcse.core.precision_options import PRECISIONS


@dataclass
class Dist:
    """This process among ``world_size`` (1 without torchrun). Every collective is a no-op for one
    process, so callers never branch on the world size for communication."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this object created the process group, so it destroys it in close()

    @classmethod
    def from_env(cls, use_cuda: bool, timeout: datetime.timedelta | None = None) -> Dist:
        """Join torchrun's process group (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``): NCCL with ``use_cuda``,
        else gloo. An already initialised group is joined, not owned."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        owns = False
        if not dist.is_initialized():
            if use_cuda:
                torch.cuda.set_device(local_rank)
            kwargs = {"timeout": timeout} if timeout is not None else {}
            dist.init_process_group("nccl" if use_cuda else "gloo", **kwargs)
            owns = True
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, owns)

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that logs and writes."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank is here (nothing for one process)."""
        if self.world_size > 1:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's value on every rank."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's value, in rank order, on every rank."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_min(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise minimum over ranks, in place."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return tensor

    def close(self, wait: bool = True) -> None:
        """Leave the process group if this object created it.

        Every rank leaves together: a rank tearing gloo down while a peer was still in its last collective
        made that peer abort at exit ("terminate called without an active exception"). Not after an error
        (``wait=False``): a peer that died would leave this rank waiting."""
        if self.owns_group:
            if wait:
                dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` is the GPU of this process when there is one, else the CPU; ``cuda`` is this process's GPU
    (``cuda:LOCAL_RANK``); ``cuda:N`` is that GPU."""
    if pref == "cpu" or (pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {pref!r} asked for but CUDA is not available")
    if pref.startswith("cuda:"):
        return torch.device(pref)
    return torch.device("cuda", local_rank)


@dataclass(frozen=True)
class Precision:
    """The numeric precision of a job and why it was chosen (every job prints :attr:`line`)."""

    name: str  # fp32 | bf16 | fp16
    reason: str

    @property
    def line(self) -> str:
        """``precision NAME (REASON)``, the line a job prints."""
        return f"precision {self.name} ({self.reason})"

    @property
    def dtype(self) -> torch.dtype | None:
        """The encoding dtype (None: float32)."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)


def choose_precision(pref: str, device: torch.device, job: str = "training") -> Precision:
    """The precision of ``pref`` (auto | fp32 | bf16 | fp16) for ``job`` (training | encoding) on ``device``.

    ``auto``: on GPUs bf16 where supported, else fp16 (training with loss scaling). On CPUs bf16 where the
    CPU has bf16 units (AMX, AVX512-BF16), else fp32: with the units a bf16 matmul runs several times faster
    (measured: 2x for encoding and for training steps on AVX512-BF16 alone, 2.7x encoding and 2x training with
    AMX, STS-B dev within 0.05); without them bf16 is emulated and slower than fp32. Training computes in bf16
    under autocast over fp32 master weights; encoding runs bf16 weights (:meth:`Encoder.encode_tokenized`).
    """
    if pref not in PRECISIONS:
        raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {pref!r}")
    if pref != "auto":
        if pref == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision bf16 is not supported on this GPU; use fp16 (with loss scaling)")
        return Precision(pref, "asked for")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", "auto: this GPU supports bf16")
        return Precision(
            "fp16", "auto: this GPU has no bf16; fp16" + (" with loss scaling" if job == "training" else "")
        )
    from simcse.core.hardware import FLAGS_ENV, bf16_units

    units = bf16_units()
    if units:
        how = "autocast over fp32 weights" if job == "training" else "bf16 weights"
        return Precision("bf16", f"auto: this CPU has {units}; {how}")
    return Precision(
        "fp32",
        f"auto: this CPU has no bf16 units (AMX, AVX512-BF16), so bf16 would be slower"
        f"{'; ' + FLAGS_ENV + ' is set' if os.environ.get(FLAGS_ENV) is not None else ''}",
    )


def encoding_dtype(
    pref: str | None, device: str | torch.device | None = None
) -> tuple[torch.dtype | None, str]:
    """The dtype to encode with for ``pref`` (auto | fp32 | bf16 | fp16; None = auto) on ``device`` (None: the
    CPU), and the line saying which and why."""
    chosen = choose_precision(pref or "auto", torch.device(device or "cpu"), job="encoding")
    return chosen.dtype, chosen.line


def encoding_precision(
    pref: str | None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    graph_line: str | None = None,
) -> tuple[torch.dtype | None, str]:
    """The dtype an encoding job runs in and the line saying which and why: an exported graph's own line
    (``graph_line``: the precision is the graph's), else ``dtype`` when the caller gave one, else what
    ``pref`` picks on ``device`` (:func:`encoding_dtype`)."""
    if graph_line is not None:
        return None, graph_line
    if dtype is not None:
        return dtype, f"precision {str(dtype).removeprefix('torch.')} (asked for)"
    return encoding_dtype(pref, device)


def enable_tf32() -> None:
    """TF32 tensor cores for fp32 matmuls and convolutions (Ampere and later; no effect elsewhere)."""
    if hasattr(torch.backends, "fp32_precision"):  # torch >= 2.9: the legacy allow_tf32 flags are deprecated
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Training's autocast for ``precision`` (fp32 | bf16 | fp16) on ``device``: none for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's (``seed`` mod 2**32) and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
