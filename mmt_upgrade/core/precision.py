"""CPU bf16 autocast: fairseq's own `--bf16` assumes a TPU on CPU, so the task applies autocast itself."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ContextManager

import torch

from mmt_upgrade.core.options import OptionGroup, option

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Not on/off: YAML would read those as booleans.
CPU_BF16_CHOICES = ("auto", "always", "never")


@dataclass
class PrecisionOptions(OptionGroup):
    """The precision flag of `--task upgrade_translation` (its parser gets it from here)."""

    cpu_bf16: str = option("auto", "bf16 autocast for forward passes on CPU (auto: on where the CPU has native "
                                   "bf16 instructions)", choices=CPU_BF16_CHOICES)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where the CPU has bf16 matrix instructions (emulated bf16 is slower than fp32)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in BF16_CPU_FLAGS)


def resolve_cpu_bf16(mode: str, on_cpu: bool) -> bool:
    """Whether to autocast to bf16: `auto` turns it on only on a CPU with native bf16 instructions."""
    if mode not in CPU_BF16_CHOICES:
        raise ValueError(f"--cpu-bf16 must be one of {', '.join(CPU_BF16_CHOICES)}, got {mode!r}")
    if not on_cpu:
        return False
    return mode == "always" or (mode == "auto" and cpu_has_native_bf16())


def cpu_autocast(enabled: bool) -> ContextManager:
    """Forward passes in bf16 with fp32 master weights; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)
