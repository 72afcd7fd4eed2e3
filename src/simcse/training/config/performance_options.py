"""How fast a run computes, never what: the device, packed execution, attention kernels, compilation,
TF32, the CPU dropout stream, threads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simcse.core.options import must_be_non_negative, option

GROUP = "performance switches"
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
PACKED = ("auto", "on", "off")


@dataclass
class PerformanceOptions:
    """The performance group of :class:`~simcse.training.config.TrainConfig` (device, packing, attention,
    compilation, threads); each field's help line documents it."""

    device: str = option("auto", " | ".join(DEVICES), GROUP)
    packed: str = option(
        "auto", "unpadded execution of BERT-style models: auto (CPU only) | on | off", GROUP, choices=PACKED
    )
    attn_implementation: str = option("sdpa", "sdpa | eager", GROUP, choices=("sdpa", "eager"))
    compile: bool = option(
        False, "torch.compile the encoder (batches padded to max_seq_len: one graph)", GROUP
    )
    tf32: bool = option(True, "GPUs: TF32 tensor cores for the fp32 matmuls", GROUP)
    compile_backend: str = option(
        "inductor", "torch.compile backend: inductor | aot_eager | cudagraphs ...", GROUP
    )
    fast_dropout: bool = option(
        True, "CPU: dropout masks from 32-bit draws, ~2x cheaper than bernoulli_ (no GPU effect)", GROUP
    )
    num_threads: int = option(0, "CPU threads for torch; 0 = torch's default", GROUP)


def problems(c: Any) -> list[str]:
    """The performance options' problems: negative threads, compile with packed on, an unknown device."""
    found = must_be_non_negative(c, "num_threads")
    if c.compile and c.packed == "on":
        found.append(
            "compile needs static shapes and packed execution has data-dependent ones; set packed off or auto"
        )
    if c.device not in DEVICES[:3] and not c.device.startswith("cuda:"):
        found.append(f"device must be auto, cpu, cuda or cuda:N, got {c.device!r}")
    return found
