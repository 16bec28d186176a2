"""What the machine can do fast, for presets that adapt (`${mnist_lab.fast_precision:}`), and how
torch should ask about it."""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def cpu_model() -> str:
    """The CPU's model name, as lscpu gives it (for benchmark reports)."""
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def cpu_flags() -> set[str]:
    """The CPU's feature flags, per /proc/cpuinfo (empty where it cannot be read)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in info.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@functools.cache
def fast_precision() -> str:
    """bf16-mixed where the GPU or CPU has bfloat16 arithmetic, else 32-true (emulated bf16 is slow);
    the choice and its reason are logged once."""
    import torch  # here: the configs resolve this only for a run that trains, which imports torch anyway

    if torch.cuda.is_available():
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        choice, why = (
            ("bf16-mixed", "this GPU computes bfloat16") if native else ("16-mixed", "no bfloat16 on this GPU")
        )
    elif cpu_has_bf16():
        choice, why = "bf16-mixed", "this CPU computes bfloat16 natively (AVX-512 BF16 or AMX)"
    else:
        choice, why = "32-true", "this CPU has no native bfloat16 (AVX-512 BF16 or AMX), where bf16 would be slower"
    log.info("arithmetic: trainer.precision=%s, as %s", choice, why)
    return choice


NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
NVML = "libnvidia-ml.so.1"  # NVIDIA's management library, installed with the GPU driver


def nvml_loads() -> bool:
    """Whether NVIDIA's management library loads on this machine."""
    try:
        ctypes.CDLL(NVML)
    except OSError:
        return False
    return True


def skip_nvml_where_missing() -> None:
    """Where NVML cannot load, have torch check for CUDA through its runtime directly.

    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 so that checking for CUDA does not initialise it
    before processes fork. Without NVML (a CPU machine with a CUDA build of torch) torch tries to load
    it again on every check, then asks the runtime anyway: the same answer. Adam's step checks every
    time, and the failed load costs about 0.1 ms of a 0.3 ms softmax step.
    """
    if os.environ.get(NVML_CHECK) == "1" and not nvml_loads():
        os.environ[NVML_CHECK] = "0"
        log.info("NVML is not installed: torch checks for CUDA through its runtime (%s=0)", NVML_CHECK)
