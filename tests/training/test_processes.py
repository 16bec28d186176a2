"""A fit over several processes goes through mnist_lab.training.processes; a one-process fit never does."""

from __future__ import annotations

import pytest

from mnist_lab.training import processes

from helpers import fit

TINY = [
    "model=softmax",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "test=false",
    "logger=none",
]


def test_a_one_process_fit_runs_none_of_the_multi_process_checks(tmp_path, monkeypatch):
    called = []
    for name in ("check_launch", "check_nodes", "log_rank", "ddp_failure", "recover_spawned_state"):
        monkeypatch.setattr(processes, name, lambda *args, name=name: called.append(name))
    metrics = fit(tmp_path, *TINY)
    assert metrics["epochs_run"] == 1 and called == []


@pytest.mark.parametrize("devices", [2])
def test_a_fit_set_up_for_several_processes_checks_its_launch_first(tmp_path, monkeypatch, devices):
    def refuse(*args: object) -> None:
        raise RuntimeError("checked")

    monkeypatch.setattr(processes, "check_launch", refuse)
    with pytest.raises(RuntimeError, match="checked"):
        fit(tmp_path, *TINY, "trainer=ddp", f"trainer.devices={devices}", "trainer.accelerator=cpu")
