"""A fit over several processes goes through mnist_lab.training.processes; a one-process fit never does."""

from __future__ import annotations

import json
import multiprocessing
import socket

import pytest
import torch

from mnist_lab.training import processes

from helpers import QUIET, TESTS, fit, job_metrics, run_cli, run_process

TINY = [
    "model=softmax",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "test=false",
    "logger=none",
]

pytestmark = pytest.mark.long  # run first (tests/conftest.py)


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


def test_ddp_trains_two_cpu_processes_into_one_run_folder_with_shared_weights(tmp_path):
    run = tmp_path / "run"
    probe = f"+callbacks.probe={{_target_:probes.Probe,folder:{tmp_path}}}"
    # Two processes of 50 images per step: the same 100 images per optimizer step as one process.
    result = run_process(
        "trainer=ddp",
        "data.batch_size=50",
        "model=softmax",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=100",
        probe,
        *QUIET,
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        env={"PYTHONPATH": str(TESTS)},
    )
    assert result.returncode == 0, result.stderr
    ranks = [json.loads((tmp_path / f"probe_rank{r}.json").read_text()) for r in (0, 1)]
    # Each process trained on its own half of every epoch, and the gradients were averaged: same weights.
    assert len(ranks[0]["labels"]) == len(ranks[1]["labels"]) == 100 * 50
    assert ranks[0]["labels"] != ranks[1]["labels"]
    assert ranks[0]["weights"] == ranks[1]["weights"] and ranks[0]["weights_abs"] == ranks[1]["weights_abs"]
    # One run: one metrics.json, one set of checkpoints, no folder per rank.
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["run"]
    assert (run / "train_ddp_process_1.log").is_file() and not (tmp_path / "outputs").exists()
    assert len(list((run / "checkpoints").glob("epoch_*.ckpt"))) == 1
    ddp = json.loads((run / "metrics.json").read_text())
    single = run_cli(
        "model=softmax",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=100",
        *QUIET,
        f"hydra.run.dir={tmp_path / 'single'}",
        cwd=tmp_path,
    )
    assert single.returncode == 0, single.stderr
    one = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert ddp["epochs_run"] == one["epochs_run"] == 1
    # Rank r takes every other image of the shared order, so each step averages the gradients of
    # exactly the images one process would batch together: the same model up to float rounding.
    assert abs(ddp["test/acc"] - one["test/acc"]) < 0.002


@pytest.mark.slow
def test_ddp_spawn_runs_inside_a_multirun_with_full_metrics(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_process(
        "-m",
        "trainer=ddp",
        "trainer.strategy=ddp_spawn",
        "model=softmax",
        "trainer.max_epochs=5",
        "callbacks.accuracy_stop.stopping_threshold=0.6",
        "trainer.limit_train_batches=20",
        *QUIET,
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    metrics = job_metrics(sweep, "0_softmax")
    assert metrics["stop_reason"] == "accuracy_threshold" and metrics["epochs_run"] < 5
    assert len(metrics["epoch_seconds"]) == metrics["epochs_run"]
    # The spawned processes trained; the history comes back with their last checkpoint.
    assert [row["epoch"] for row in metrics["history"]] == list(range(1, metrics["epochs_run"] + 1))
    assert metrics["history"][-1]["train/acc"] == pytest.approx(metrics["train/acc"])


def group_left_after_teardown(port: int) -> bool:
    """Whether a one-process gloo group is still initialized after EndSpawnedProcessGroup's teardown."""
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    processes.EndSpawnedProcessGroup().teardown(None, None, "test")
    left = torch.distributed.is_initialized()
    if left:
        torch.distributed.destroy_process_group()
    return left


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_spawned_process_ends_its_gloo_group_when_its_fit_or_test_ends_and_no_other_process_does():
    # A gloo group left to its destructor at exit can abort a spawned process, and with it the run.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(group_left_after_teardown, (free_port(),)) is False
    # DDP's rerun ranks, SLURM's tasks and the main process keep theirs for the test that follows the fit.
    assert group_left_after_teardown(free_port()) is True
