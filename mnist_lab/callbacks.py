"""Callbacks of mnist_lab's own (Lightning provides the rest)."""

from __future__ import annotations

import logging
import time

import lightning as L
import torch

log = logging.getLogger(__name__)


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


class TutorialLog(L.Callback):
    """Print the tutorial's own line every `every_n_epochs` epochs, to read both logs side by side:
    `Epoch: 0001 cost= 5.25198 accuracy= 0.30315` (the epoch's mean batch loss and accuracy)."""

    def __init__(self, every_n_epochs: int = 10) -> None:
        self.every_n_epochs = every_n_epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Callbacks run before the module logs its epoch metrics, so read the metrics themselves.
        if trainer.current_epoch % self.every_n_epochs == 0 and not trainer.sanity_checking:
            cost, accuracy = pl_module.train_loss.compute().item(), pl_module.train_acc.compute().item()
            log.info(tutorial_line(trainer.current_epoch + 1, cost, accuracy))


def tutorial_line(epoch: int, cost: float, accuracy: float) -> str:
    """The tutorial's log line for a 1-based epoch."""
    return f"Epoch: {epoch:04d} cost= {cost:.5f} accuracy= {accuracy:.5f}"
