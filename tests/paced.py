"""Callbacks that slow training down, so that a signal or a requeue lands where a test wants it
however fast the machine is."""

import time
from pathlib import Path
from typing import Any

import lightning as L


class Pace(L.Callback):
    """Sleeps `seconds` after every training step."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        time.sleep(self.seconds)


class SlowStep(L.Callback):
    """Every training step after the first creates `marker`, then sleeps a minute."""

    def __init__(self, marker: str) -> None:
        self.marker = Path(marker)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step > 0:
            self.marker.write_text(str(trainer.global_step))
            time.sleep(60.0)  # the test sends its second Ctrl-C long before
