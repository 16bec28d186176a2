"""Loading a checkpoint: what is not one is refused, and what is loads into the module that wrote it."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from mnist_lab.checkpoints.load import CheckpointError, load_checkpoint, resolve_checkpoint
from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.models.classifier import Classifier

from helpers import one_error_line, run_cli


def test_lightnings_own_predict_loop_reads_the_test_set_as_training_scored_it(cnn_run, test_set):
    run_dir, metrics = cnn_run
    model = Classifier.load_from_checkpoint(resolve_checkpoint(run_dir))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    probabilities = torch.cat(trainer.predict(model, datamodule=MNISTDataModule(download=False)))
    labels = test_set[1]
    assert probabilities.shape == (10_000, 10)
    assert (probabilities.argmax(1) == labels).float().mean().item() == pytest.approx(metrics["test/acc"], abs=1e-6)


def run_cli_module(module: str, *args: str):
    return run_cli(*args, module=f"mnist_lab.{module}")


def test_corrupt_and_foreign_checkpoints_are_refused(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": {"lr": 0.1}}, foreign)
    error = one_error_line(run_cli_module("evaluate", f"ckpt_path={foreign}", f"hydra.run.dir={tmp_path / 'run'}"))
    assert "not a mnist_lab checkpoint" in error
