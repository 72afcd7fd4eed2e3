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

from simcse.errors import ConfigError


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
        return self.rank == 0

    def barrier(self) -> None:
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


def resolve_precision(pref: str, device: torch.device) -> str:
    """``auto``: bf16 on GPUs that have it, else fp16 (with loss scaling); fp32 on CPUs."""
    if pref != "auto":
        if pref == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision bf16 is not supported on this GPU; use fp16 (with loss scaling)")
        return pref
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def enable_tf32() -> None:
    """TF32 tensor cores for fp32 matmuls and convolutions (Ampere and later; no effect elsewhere)."""
    if hasattr(torch.backends, "fp32_precision"):  # torch >= 2.9: the legacy allow_tf32 flags are deprecated
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
