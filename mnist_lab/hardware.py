"""What the machine can do fast, for presets that adapt: `${mnist_lab.fast_precision:}`."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

RESOLVER = "mnist_lab.fast_precision"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX), per /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_precision() -> str:
    """bf16-mixed where the GPU or CPU has bfloat16 arithmetic, else 32-true (emulated bf16 is slow)."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32-true"


OmegaConf.register_new_resolver(RESOLVER, fast_precision, replace=True)
