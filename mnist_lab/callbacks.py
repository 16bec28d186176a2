"""Callbacks of mnist_lab's own (Lightning provides the rest)."""

from __future__ import annotations

import time

import lightning as L
import torch


class EpochTimer(L.Callback):
    """Wall-clock seconds of each training epoch, validation excluded, in `seconds`."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start: float | None = None

    def _stop(self, trainer: L.Trainer) -> None:
        if self._start is None:
            return
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # once per epoch: the queued kernels belong to this epoch
        self.seconds.append(time.perf_counter() - self._start)
        self._start = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(trainer)  # epochs without validation

    def state_dict(self) -> dict[str, list[float]]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, list[float]]) -> None:
        self.seconds = list(state_dict["seconds"])
