"""Classifier: the one LightningModule that trains, tests and predicts with any network."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_lab.errors import NonFiniteLossError
from mnist_lab.models.nets import IMAGE_SHAPE, NUM_CLASSES

Batch = tuple[Tensor, Tensor]
# Lightning's own keys of a learning-rate scheduler config, the rest of which builds the scheduler.
SCHEDULER_KEYS = ("interval", "frequency", "monitor", "strict", "name")


class Classifier(L.LightningModule):
    """Cross-entropy training of the network described by `net` with the optimizer `optimizer`.

    Both are config mappings with a `_target_` (the optimizer `_partial_`), stored as
    hyperparameters so that a checkpoint alone rebuilds the model (mnist_lab.checkpoints.load).
    `scheduler`, if given, is a `_partial_` learning-rate scheduler whose config also says when Lightning
    steps it (`interval: epoch` or `step`, and Lightning's other scheduler keys; conf/scheduler/);
    `compile=True` runs the training steps through torch.compile; `label_smoothing` softens the training
    targets (validation and test losses are the plain cross-entropy). Lightning's automatic optimization
    makes one optimizer step per mini-batch.
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        compile: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"model.label_smoothing must lie in [0, 1), got {label_smoothing!r}")
        self.save_hyperparameters(logger=False)
        self.net = instantiate(net)
        # The input scaling belongs to the model: a checkpoint, an exported file and the server all
        # take pixels in [0, 1]. Set from the training split when data.normalize=true.
        self.register_buffer("input_mean", torch.tensor(0.0))
        self.register_buffer("input_std", torch.tensor(1.0))
        self.example_input_array = torch.zeros(1, *IMAGE_SHAPE)
        # Losses are checked for NaN by training_step itself (check_finite).
        self.train_loss, self.val_loss, self.test_loss = (MeanMetric(nan_strategy="disable") for _ in range(3))
        self.train_acc, self.val_acc, self.test_acc = (
            MulticlassAccuracy(NUM_CLASSES, average="micro", validate_args=False) for _ in range(3)
        )
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run knows its best
        self._compiled_forward: Callable[[Tensor], Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images shaped (N, 1, 28, 28), pixels in [0, 1]."""
        return self.net(self.scale(x))

    def scale(self, x: Tensor) -> Tensor:
        """Pixels in [0, 1] as the network sees them: (x - input_mean) / input_std."""
        return (x - self.input_mean) / self.input_std

    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        if getattr(datamodule, "normalize", False):
            self.input_mean.fill_(datamodule.mean)
            self.input_std.fill_(datamodule.std)

    def on_train_start(self) -> None:
        if self.hparams.compile and self._compiled_forward is None:
            # Training steps only: a compiled function (not a submodule) leaves checkpoint keys and
            # TensorBoard's graph tracing (torch.jit cannot trace compiled code) untouched.
            self._compiled_forward = torch.compile(self.net.forward)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Cross-entropy of one mini-batch; Lightning runs backward and the optimizer step."""
        loss = self.step_loss(batch)
        self.check_finite(loss)
        return loss

    def step_loss(self, batch: Batch) -> Tensor:
        """One training mini-batch's loss, added to the epoch's training metrics."""
        x, y = batch
        logits = (self._compiled_forward or self.net)(self.scale(x))
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        self.train_loss.update(loss.detach(), weight=y.numel())
        self.train_acc.update(logits.detach(), y)
        return loss

    def check_finite(self, losses: Tensor) -> None:
        """Stop training with NonFiniteLossError once a training loss is NaN or infinite."""
        if not torch.isfinite(losses).all():
            bad = losses[~torch.isfinite(losses)][0].item()
            raise NonFiniteLossError(
                f"the training loss became {bad} in epoch {self.current_epoch + 1}, so training stopped; "
                "the checkpoints saved before it are kept; lower optimizer.lr and train again"
            )

    def _eval_step(self, batch: Batch, loss_metric: MeanMetric, acc_metric: MulticlassAccuracy) -> Tensor:
        x, y = batch
        logits = self(x)
        loss_metric.update(F.cross_entropy(logits, y), weight=y.numel())
        acc_metric.update(logits, y)
        return logits

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_loss, self.val_acc)

    def test_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """The batch's logits, scored; callbacks get them as `outputs` (training.callbacks.TestFigures)."""
        return self._eval_step(batch, self.test_loss, self.test_acc)

    # Metrics are updated every step and logged once per epoch: logging costs about a millisecond a call.
    def on_train_epoch_end(self) -> None:
        self.log_dict({"train/loss": self.train_loss, "train/acc": self.train_acc}, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.log_dict({"val/loss": self.val_loss, "val/acc": self.val_acc}, prog_bar=True)
        if not self.trainer.sanity_checking:  # the untrained model's score is not a best
            self.val_acc_best(self.val_acc.compute())
            self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)  # equal on every rank

    def on_test_epoch_end(self) -> None:
        self.log_dict({"test/loss": self.test_loss, "test/acc": self.test_acc})

    def predict_step(self, batch: Batch | Tensor, batch_idx: int) -> Tensor:
        """Class probabilities for a batch of images (labels, if present, are ignored)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=-1)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        # The scheduler's config holds Lightning's keys for it (interval: epoch or step) beside its own.
        settings = {k: v for k, v in self.hparams.scheduler.items() if k in SCHEDULER_KEYS}
        scheduler = instantiate({k: v for k, v in self.hparams.scheduler.items() if k not in SCHEDULER_KEYS})
        if "total_steps" in inspect.signature(scheduler.func).parameters and "total_steps" not in scheduler.keywords:
            # A schedule over the whole run (one-cycle) needs its length, which only the trainer knows.
            scheduler = functools.partial(scheduler, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler(optimizer=optimizer), **settings}}
