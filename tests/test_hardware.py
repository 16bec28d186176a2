"""How torch is asked about the machine: where NVML is missing, the CUDA check skips it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mnist_lab.training import hardware

from conftest import QUIET, run_cli

PROBE = """
import os, torch
import lightning  # sets PYTORCH_NVML_BASED_CUDA_CHECK=1
from mnist_lab.training import hardware
hardware.nvml_loads = lambda: {loads}
before = torch.cuda.is_available()
hardware.skip_nvml_where_missing()
print(os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"], before == torch.cuda.is_available())
"""


@pytest.mark.parametrize(("loads", "check"), [(False, "0"), (True, "1")])
def test_the_nvml_based_cuda_check_is_kept_exactly_where_nvml_loads(loads, check):
    env = {k: v for k, v in os.environ.items() if k != hardware.NVML_CHECK}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(loads=loads)], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.split() == [check, "True"]  # and torch's answer about CUDA is the same


def test_a_training_run_checks_for_cuda_without_nvml_where_nvml_is_missing(tmp_path):
    result = run_cli(
        "model=softmax",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=5",
        "trainer.limit_val_batches=1",
        "test=false",
        *QUIET,
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    said = (
        f"torch checks for CUDA through its runtime ({hardware.NVML_CHECK}=0)" in (tmp_path / "train.log").read_text()
    )
    assert said is not hardware.nvml_loads()
