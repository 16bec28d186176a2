"""A callback for benchmarks/time_to_accuracy.py: test accuracy against training seconds."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch

from mnist_lab.training.callbacks import EpochTimer


class AccuracyClock(L.Callback):
    """At every training epoch's end, score the test set (not timed) and write `path`: a list of
    [training seconds so far, test accuracy], the seconds from mnist_lab's EpochTimer."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.points: list[list[float]] = []

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        timer = next(c for c in trainer.callbacks if isinstance(c, EpochTimer))
        x, y = trainer.datamodule.data_test.tensors
        was_training = pl_module.training
        pl_module.eval()
        correct = sum(
            (pl_module(xb.to(pl_module.device)).argmax(-1) == yb.to(pl_module.device)).sum().item()
            for xb, yb in zip(x.split(2000), y.split(2000))
        )
        pl_module.train(was_training)
        self.points.append([sum(timer.seconds), correct / len(y)])
        self.path.write_text(json.dumps(self.points))
