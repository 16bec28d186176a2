"""`resume=<run folder>` and `resume=latest`: a run continued with its own config, from the newest readable
checkpoint when its last one is damaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import QUIET, TINY_RUN, comparable, one_error_line, run_cli

SMALL = ["trainer.accelerator=cpu", "model=softmax", *QUIET]


def test_resume_latest_continues_the_newest_run(tmp_path):
    first = run_cli(*SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=5", "test=false", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (run,) = [p.parent for p in tmp_path.glob("outputs/*/*/metrics.json")]
    resumed = run_cli("resume=latest", "trainer.max_epochs=2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2
    assert len(list(tmp_path.glob("outputs/*/*/metrics.json"))) == 1  # the same folder, no new one
    assert "resume=latest found no training run" in one_error_line(run_cli("resume=latest", cwd=tmp_path / "outputs"))


def test_resume_of_a_folder_that_is_not_a_run_says_so(tmp_path):
    result = run_cli(f"resume={tmp_path}")
    assert one_error_line(result) == (
        f"resume={tmp_path}: not a mnist_lab run folder (no .hydra/config.yaml); give the folder of a run"
    )


RUN = TINY_RUN  # runs compared bit for bit


def truncate(checkpoint: Path) -> None:
    """Damage a checkpoint as a full disk or a copy cut short would: its first 5,000 bytes only."""
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])


@pytest.fixture
def two_epochs(tmp_path):
    """A run of two epochs in its own folder (a copy elsewhere would not reload its checkpoints' state)."""
    folder = tmp_path / "run"
    result = run_cli(*RUN, "trainer.max_epochs=2", f"hydra.run.dir={folder}")
    assert result.returncode == 0, result.stdout[-2000:]
    return folder


def test_a_damaged_last_checkpoint_resumes_from_the_newest_readable_one_and_ends_like_an_uninterrupted_run(
    tmp_path, two_epochs
):
    whole = tmp_path / "whole"
    assert run_cli(*RUN, "trainer.max_epochs=3", f"hydra.run.dir={whole}").returncode == 0
    run = two_epochs
    truncate(run / "checkpoints" / "last.ckpt")
    (best,) = (p for p in (run / "checkpoints").glob("epoch_*.ckpt"))

    resumed = run_cli(f"resume={run}", "trainer.max_epochs=3")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    (warning,) = [line for line in resumed.stderr.splitlines() if line.startswith("warning:")]
    assert warning == (
        f"warning: resume={run}: last.ckpt (OSError) cannot be read: resuming from {best.name}, "
        f"the newest readable checkpoint in {run / 'checkpoints'} (after epoch 2)"
    )
    assert comparable(run) == comparable(whole) and comparable(run)["epochs_run"] == 3
    weights = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in (whole, run)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_run_whose_checkpoints_are_all_damaged_says_so_in_one_line(tmp_path, two_epochs):
    run = two_epochs
    for checkpoint in (run / "checkpoints").glob("*.ckpt"):
        truncate(checkpoint)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    error = one_error_line(run_cli(f"resume={run}"))
    assert error.startswith(f"resume={run}: no checkpoint in {run / 'checkpoints'} can be read (")
    assert "last.ckpt: OSError" in error and error.endswith("); start a new run instead")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing touched
