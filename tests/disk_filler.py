"""A callback that fills the disk under a run at a chosen moment, as another job writing to the same
file system would: the run's next write there meets the kernel's own ENOSPC."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import lightning as L


def fill(filler: str | Path) -> None:
    """Write `filler` until its file system has no byte left."""
    with open(filler, "ab", buffering=0) as f:
        for chunk in (b"\0" * (1 << 20), b"\0" * 4096, b"\0"):
            try:
                while f.write(chunk):
                    pass
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise


class FillDisk(L.Callback):
    """Fill the disk that holds `filler` at the moment `when` names: `epoch_end` of training epoch
    `epoch` (0-based; before that epoch's checkpoints are written), `batch_end` of its first step,
    or `fit_end` (after the last checkpoint)."""

    def __init__(self, filler: str, when: str = "epoch_end", epoch: int = 0) -> None:
        self.filler, self.when, self.epoch = filler, when, epoch

    def _maybe(self, trainer: L.Trainer, when: str) -> None:
        if when == self.when and (when == "fit_end" or trainer.current_epoch == self.epoch):
            fill(self.filler)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._maybe(trainer, "epoch_end")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._maybe(trainer, "batch_end")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._maybe(trainer, "fit_end")
