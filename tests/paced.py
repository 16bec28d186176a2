"""A callback for the SLURM tests: every training step takes at least `seconds`, so that a requeue
sent after the first epoch lands mid-training however fast the machine is."""

import time
from typing import Any

import lightning as L


class Pace(L.Callback):
    """Sleeps `seconds` after every training step."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        time.sleep(self.seconds)


class StackSafePace(Pace):
    """Pace that declares it does not care how many mini-batches a step holds, so that it may slow
    a run on stacked steps (mnist_lab.training.stacked)."""

    stack_safe = True
