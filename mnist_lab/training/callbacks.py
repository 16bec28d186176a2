"""Callbacks of mnist_lab's own (Lightning provides the rest)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig

from mnist_lab.checkpoints.paths import LAST, START
from mnist_lab.errors import Interrupted
from mnist_lab.models.nets import NUM_CLASSES

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


class History(L.Callback):
    """Each epoch's `train/loss`, `train/acc`, `val/loss`, `val/acc` and training seconds (from the
    EpochTimer), as `rows`: metrics.json's `history`. Kept in checkpoints, so a resumed run continues it."""

    TRAIN = ("train/loss", "train/acc")
    VAL = ("val/loss", "val/acc")

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._ended: int | None = None  # the epoch whose training ended and whose row is not written yet
        self._val: dict[int, dict[str, float]] = {}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            metrics = trainer.callback_metrics
            self._val[trainer.current_epoch] = {k: float(metrics[k]) for k in self.VAL if k in metrics}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Callbacks run before the module logs the epoch's training metrics: the row is written at
        # the next moment they are known (the epoch's checkpoint, the next epoch, the end of fit).
        self._ended = trainer.current_epoch

    def record(self, trainer: L.Trainer) -> None:
        """Write the row of the epoch that has just ended, from what it logged."""
        if self._ended is None:
            return
        epoch, self._ended = self._ended, None
        metrics, val = trainer.callback_metrics, self._val.pop(epoch, {})
        timers = [c.seconds for c in trainer.callbacks if isinstance(c, EpochTimer)]
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({k: float(metrics[k]) if k in metrics else None for k in self.TRAIN})
        row.update({k: val.get(k) for k in self.VAL})
        row["seconds"] = round(timers[0][epoch], 3) if timers and len(timers[0]) > epoch else None
        self.rows = [r for r in self.rows if r["epoch"] != epoch + 1] + [row]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.record(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # The epoch's checkpoint is saved after its training metrics are logged, but Lightning took
        # the callbacks' states before this hook: store the state with the epoch's row in it.
        self.record(trainer)
        if "callbacks" in checkpoint:
            checkpoint["callbacks"][self.state_key] = self.state_dict()

    def state_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, list[dict[str, Any]]]) -> None:
        self.rows = [dict(r) for r in state_dict["rows"]]


class EpochMetrics(L.Callback):
    """The train/ and val/ metrics of the latest epoch, kept in every checkpoint: a resume of a run
    whose fit had ended but whose metrics.json could not be written (a full disk) records them as
    the fit itself would have. `restored`: those of the checkpoint a fit resumed from."""

    def __init__(self) -> None:
        self.restored: dict[str, float] = {}
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, dict[str, float]]:
        metrics = self._trainer.callback_metrics if self._trainer is not None else {}
        return {"metrics": {k: float(v) for k, v in metrics.items() if k.startswith(("train/", "val/"))}}

    def load_state_dict(self, state_dict: dict[str, dict[str, float]]) -> None:
        self.restored = dict(state_dict["metrics"])


class Provenance(L.Callback):
    """Record in every checkpoint which LightningModule wrote it, what data it read and the config the
    command line chose, so that the checkpoint alone rebuilds it (mnist_lab.checkpoints.load) and the
    server can say how it was trained."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        module = type(pl_module)
        checkpoint["mnist_lab"] = {
            "module": f"{module.__module__}.{module.__qualname__}",
            "dataset": getattr(trainer.datamodule, "dataset_name", None),
            "trained_with": trained_with(),
        }


def trained_with() -> str:
    """The run's overrides as typed (e.g. "experiment=one_epoch seed=3"), "defaults" where there were
    none, "" outside a mnist_lab command."""
    if not HydraConfig.initialized():
        return ""
    return " ".join(HydraConfig.get().overrides.task) or "defaults"


class TutorialLog(L.Callback):
    """Print the tutorial's own line every `every_n_epochs` epochs, to read both logs side by side:
    `Epoch: 0001 cost= 5.25198 accuracy= 0.30315` (the epoch's mean batch loss and accuracy)."""

    def __init__(self, every_n_epochs: int = 10) -> None:
        self.every_n_epochs = every_n_epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Callbacks run before the module logs its epoch metrics, so read the metrics themselves.
        if trainer.current_epoch % self.every_n_epochs == 0 and not trainer.sanity_checking:
            cost, accuracy = pl_module.train_loss.compute(), pl_module.train_acc.compute()
            log.info(tutorial_line(trainer.current_epoch + 1, cost.item(), accuracy.item()))


def tutorial_line(epoch: int, cost: float, accuracy: float) -> str:
    """The tutorial's log line for a 1-based epoch."""
    return f"Epoch: {epoch:04d} cost= {cost:.5f} accuracy= {accuracy:.5f}"


class RandomState(L.Callback):
    """Keep torch's random generators in every checkpoint, so that a resumed run draws the same
    dropout masks as an uninterrupted one (the shuffle has its own per-epoch seed)."""

    def state_dict(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {"torch": torch.get_rng_state(), "cuda": cuda}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class GracefulInterrupt(L.Callback):
    """Ctrl-C or SIGTERM stops training after the current step, keeping the checkpoint of the last
    full epoch (`last.ckpt`, or `start.ckpt` during the first epoch) to resume from; a second
    signal exits at once. Training stops by raising `Interrupted`, which `train` turns into
    metrics.json and the resume command."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            os._exit(128 + signum)  # the second signal: the user wants out now
        self.received = signum
        log.warning(
            "%s received: stopping after this training step (send it again to quit at once)",
            signal.Signals(signum).name,
        )

    def _checkpoints(self, trainer: L.Trainer) -> tuple[Path, Path] | None:
        checkpoint = trainer.checkpoint_callback
        if checkpoint is None or checkpoint.dirpath is None:
            return None
        folder = Path(checkpoint.dirpath)
        return folder / LAST, folder / START

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.received = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        paths = self._checkpoints(trainer)
        if paths is not None and not paths[0].exists() and not trainer.fast_dev_run:  # it writes no checkpoints
            trainer.save_checkpoint(paths[1], weights_only=False)  # the full state, to resume from

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.received is not None:
            raise Interrupted(self.received)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        paths = self._checkpoints(trainer)
        if paths is not None and paths[0].exists():
            paths[1].unlink(missing_ok=True)  # last.ckpt now holds a full epoch

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, Interrupted):
            self._restore()  # after a signal, a second one must still exit at once during shutdown


class TestFigures(L.Callback):
    """The test set's confusion matrix and its first `mistakes` misread digits, drawn into TensorBoard
    when testing ends, from the logits the module's `test_step` returns."""

    def __init__(self, mistakes: int = 16) -> None:
        self.shown = mistakes
        self.confusion: Any = None
        self.mistakes: list[tuple[torch.Tensor, int, int]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from torchmetrics.classification import MulticlassConfusionMatrix

        self.confusion = MulticlassConfusionMatrix(NUM_CLASSES, validate_args=False).to(pl_module.device)
        self.mistakes = []

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2:
            return  # a module whose test_step returns no logits: nothing to draw
        x, y = batch
        predicted = outputs.argmax(-1)
        self.confusion.update(predicted, y)
        if len(self.mistakes) < self.shown:
            wrong = (predicted != y).nonzero().flatten()[: self.shown - len(self.mistakes)]
            self.mistakes += zip(x[wrong].cpu(), y[wrong].tolist(), predicted[wrong].tolist())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        if self.confusion is None or not self.confusion.update_called:
            return
        matrix = self.confusion.compute().cpu().numpy()  # on every process: it adds theirs up; rows: labels
        boards = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not boards or not trainer.is_global_zero:
            return
        from mnist_lab import plots

        for board in boards:
            board.experiment.add_figure("test/confusion_matrix", plots.confusion_matrix(matrix), trainer.global_step)
            if self.mistakes:
                images = torch.stack([image for image, _, _ in self.mistakes])[:, 0].numpy()
                titles = [f"{label}/{guess}" for _, label, guess in self.mistakes]
                grid = plots.digit_grid(images, titles, [True] * len(titles), columns=8)
                board.experiment.add_figure("test/mistakes", grid, trainer.global_step)
