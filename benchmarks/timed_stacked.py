"""StackedClassifier with a clock around each part of its training step, for benchmarks/step_parts.py."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from step_parts import Clock

from mnist_lab.training.stacked import StackedClassifier


class TimedStacked(StackedClassifier):
    """StackedClassifier's training step with a lap of `Clock` after each part; writes the last
    epoch's microseconds per mini-batch to `parts` (JSON)."""

    def __init__(self, parts: str, **stacked: Any) -> None:
        super().__init__(**stacked)
        self.out, self.clock, self.counting = Path(parts), Clock(), False

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.clock, self.counting = Clock(), self.current_epoch > 0

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        self.clock.lap("callback and module hooks")

    def closure(self) -> None:
        self.clock.lap("before the closure")

    def training_step(self, dataloader_iter: Iterator[tuple[Any, int, int]]) -> None:
        clock, optimizer = self.clock, self.optimizers()
        clock.lap("between steps") if self.counting and clock.batches else clock.lap("untimed")
        losses = []
        for batch, batch_idx, _ in itertools.islice(dataloader_iter, self.hparams.stack):
            clock.lap("fetch")
            batch = self.to_device(batch)
            clock.lap("batch hooks")
            loss = self.step_loss(batch)
            clock.lap("forward + loss")
            optimizer.zero_grad()
            clock.lap("zero_grad")
            loss.backward() if self.plain_backward else self.manual_backward(loss)
            clock.lap("backward")
            optimizer.step(closure=self.closure)
            self.step_schedulers("step")
            if batch_idx + 1 == self.trainer.num_training_batches:
                self.step_schedulers("epoch")
            clock.lap("Adam and after")
            losses.append(loss.detach())
            clock.batches += self.counting
        if losses:
            self.check_finite(torch.stack(losses))
        clock.lap("untimed")

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self.counting:
            self.out.write_text(json.dumps(self.clock.per_batch()))
