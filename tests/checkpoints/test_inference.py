"""The one inference path: a normalised model scales its own input for every consumer."""

from __future__ import annotations

import json

import pytest
import torch

from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.models.classifier import Classifier

from helpers import QUIET as QUIET_CLI
from helpers import run_cli


def test_a_normalised_run_is_scaled_inside_the_model_for_every_consumer(tmp_path):
    """data.normalize=true: predict, evaluate, export and Python all feed pixels in [0, 1] and agree."""
    run = tmp_path / "run"
    trained = run_cli(
        "trainer.accelerator=cpu",
        "model=mlp",
        "data.normalize=true",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=100",
        *QUIET_CLI,
        f"hydra.run.dir={run}",
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    test_acc = json.loads((run / "metrics.json").read_text())["test/acc"]
    model = Classifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    assert model.input_std.item() == pytest.approx(0.3081, abs=1e-3)  # MNIST's, kept in the state_dict
    best = Classifier.load_from_checkpoint(json.loads((run / "metrics.json").read_text())["best_ckpt"]).eval()
    dm = MNISTDataModule(download=False)
    dm.setup()
    x, y = dm.data_test.tensors
    with torch.no_grad():
        assert (best.predict_step(x, 0).argmax(1) == y).float().mean().item() == pytest.approx(test_acc, abs=1e-6)
    evaluated = run_cli(f"ckpt_path={run}", f"hydra.run.dir={tmp_path / 'e'}", module="mnist_lab.evaluate")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    report = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert report["test/acc"] == pytest.approx(test_acc, abs=1e-6)
    exported = run_cli(
        f"ckpt_path={run}",
        "format=torchscript",
        f"out={tmp_path / 'm.pt'}",
        f"hydra.run.dir={tmp_path / 'x'}",
        module="mnist_lab.export",
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    with torch.no_grad():
        assert (scripted(x).argmax(1) == y).float().mean().item() == pytest.approx(test_acc, abs=1e-6)
