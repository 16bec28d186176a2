"""A callback for benchmarks/time_to_accuracy.py: test accuracy against images seen and training seconds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch
from hand_loop import accuracy


class AccuracyClock(L.Callback):
    """Every `every` mini-batches (0: never) and at each training epoch's end, stop the clock, score the
    official test set in fp32 and append [images seen, training seconds so far, test accuracy] to the
    list in `path`. Scoring and validation are outside the clock; the run makes no choice from the test set."""

    def __init__(self, path: str, every: int = 0) -> None:
        self.path = Path(path)
        self.every = every
        self.points: list[list[float]] = []
        self.seconds = 0.0
        self.start: float | None = None
        self.mark = every

    def images(self, trainer: L.Trainer) -> int:
        """Training images seen so far: whole epochs, then this epoch's mini-batches."""
        batches, batch_size = trainer.num_training_batches, trainer.datamodule.batch_size
        per_epoch = min(batches * batch_size, len(trainer.datamodule.data_train))
        in_epoch = trainer.global_step - trainer.current_epoch * batches
        return trainer.current_epoch * per_epoch + min(in_epoch * batch_size, per_epoch)

    def lap(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Stop the clock, score the test set, record a point."""
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - self.start
        x, y = (t.to(pl_module.device) for t in trainer.datamodule.data_test.tensors)
        self.points.append([self.images(trainer), self.seconds, accuracy(pl_module, x, y)])
        self.path.write_text(json.dumps(self.points))
        self.start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        if self.every and trainer.global_step >= self.mark:
            self.mark = (trainer.global_step // self.every + 1) * self.every
            in_epoch = trainer.global_step - trainer.current_epoch * trainer.num_training_batches
            if in_epoch < trainer.num_training_batches:  # an epoch's end is scored once, after it
                self.lap(trainer, pl_module)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self.start is not None:  # the epoch's training is done
            self.lap(trainer, pl_module)
            self.start = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start is not None:  # an epoch without validation
            self.lap(trainer, pl_module)
            self.start = None
