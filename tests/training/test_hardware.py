"""How torch is asked about the machine: where NVML is missing, the CUDA check skips it."""

from __future__ import annotations

import os

import pytest

from mnist_lab.training import hardware

from helpers import QUIET, run_cli


@pytest.mark.parametrize(("loads", "check"), [(False, "0"), (True, "1")])
def test_the_nvml_based_cuda_check_is_kept_exactly_where_nvml_loads(monkeypatch, loads, check):
    import torch

    monkeypatch.setenv(hardware.NVML_CHECK, "1")  # what importing Lightning sets
    monkeypatch.setattr(hardware, "nvml_loads", lambda: loads)
    before = torch.cuda.is_available()
    hardware.skip_nvml_where_missing()
    assert os.environ[hardware.NVML_CHECK] == check
    assert torch.cuda.is_available() == before  # torch's answer about CUDA is the same


def test_a_training_run_checks_for_cuda_without_nvml_where_nvml_is_missing(tmp_path):
    result = run_cli(
        "model=softmax",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=5",
        "trainer.limit_val_batches=1",
        "test=false",
        *QUIET,
        f"hydra.run.dir={tmp_path}",
        env={hardware.NVML_CHECK: "1"},  # what importing Lightning sets in a new process
    )
    assert result.returncode == 0, result.stderr[-2000:]
    said = (
        f"torch checks for CUDA through its runtime ({hardware.NVML_CHECK}=0)" in (tmp_path / "train.log").read_text()
    )
    assert said is not hardware.nvml_loads()


@pytest.mark.parametrize(("bf16", "precision"), [(True, "bf16-mixed"), (False, "32-true")])
def test_fast_precision_takes_bf16_only_where_the_cpu_computes_it_and_says_why(monkeypatch, caplog, bf16, precision):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: bf16)
    hardware.fast_precision.cache_clear()
    try:
        with caplog.at_level("INFO", logger=hardware.__name__):
            assert hardware.fast_precision() == hardware.fast_precision() == precision
    finally:
        hardware.fast_precision.cache_clear()
    (said,) = [r.getMessage() for r in caplog.records if "arithmetic:" in r.getMessage()]  # once per process
    assert said.startswith(f"arithmetic: trainer.precision={precision}, as this CPU ")


def test_the_one_epoch_preset_logs_the_arithmetic_it_chose(tmp_path):
    result = run_cli(
        "experiment=one_epoch",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "test=false",
        *QUIET,
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    chosen = "bf16-mixed" if hardware.cpu_has_bf16() else "32-true"
    assert f"arithmetic: trainer.precision={chosen}, as this CPU" in (tmp_path / "train.log").read_text()
