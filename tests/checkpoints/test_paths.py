"""Which checkpoint `ckpt_path=` names: a file, a run folder's best, `latest`, and the errors when there is none."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_lab.checkpoints.load import CheckpointError, resolve_checkpoint

from helpers import one_error_line, run_cli


def test_run_folder_and_latest_resolve_to_the_best_checkpoint(cnn_run):
    run_dir, metrics = cnn_run
    assert resolve_checkpoint(run_dir) == Path(metrics["best_ckpt"])
    assert resolve_checkpoint("latest", run_dir.parent) == Path(metrics["best_ckpt"])


def run_cli_module(module: str, *args: str):
    return run_cli(*args, module=f"mnist_lab.{module}")


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    error = one_error_line(
        run_cli_module("predict", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'run'}")
    )
    assert "nope.ckpt does not exist" in error


def test_latest_with_no_runs_says_to_train_first(tmp_path):
    with pytest.raises(CheckpointError, match="found no training run.*python -m mnist_lab"):
        resolve_checkpoint("latest", tmp_path)
