"""Classifier: the one LightningModule that trains, tests and predicts with any network."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.pytorch.core.saving import load_hparams_from_tags_csv, load_hparams_from_yaml
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from mnist_lab import plots
from mnist_lab.checkpoints.trust import check_targets
from mnist_lab.errors import NonFiniteLossError
from mnist_lab.models.nets import IMAGE_SHAPE, NUM_CLASSES

Batch = tuple[Tensor, Tensor]
MISTAKES_SHOWN = 16  # misclassified test digits drawn in TensorBoard


class Classifier(L.LightningModule):
    """Cross-entropy training of the network described by `net` with the optimizer `optimizer`.

    Both are config mappings with a `_target_` (the optimizer `_partial_`), stored as
    hyperparameters so that `Classifier.load_from_checkpoint(path)` alone rebuilds the model.
    `scheduler`, if given, is a `_partial_` learning-rate scheduler stepped once per epoch;
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
        self.train_acc = MeanMetric(nan_strategy="disable")
        self.val_acc, self.test_acc = (
            MulticlassAccuracy(NUM_CLASSES, average="micro", validate_args=False) for _ in range(2)
        )
        # This epoch's (loss, logits, labels) per step: a metric update, even an argmax, costs as much as a
        # small network's step, so the training metrics take them all at once, at the epoch's end.
        self.train_steps: list[tuple[Tensor, Tensor, Tensor]] = []
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run knows its best
        self.test_confusion = MulticlassConfusionMatrix(NUM_CLASSES, validate_args=False)
        self._test_mistakes: list[tuple[Tensor, Tensor, Tensor]] = []
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
        self.train_steps.append((loss.detach(), logits.detach(), y))
        return loss

    def check_finite(self, losses: Tensor) -> None:
        """Stop training with NonFiniteLossError once a training loss is NaN or infinite."""
        if not torch.isfinite(losses).all():
            bad = losses[~torch.isfinite(losses)][0].item()
            raise NonFiniteLossError(
                f"the training loss became {bad} in epoch {self.current_epoch + 1}, so training stopped; "
                "the checkpoints saved before it are kept; lower optimizer.lr and train again"
            )

    def on_train_epoch_start(self) -> None:
        self.train_steps = []

    def train_epoch_metrics(self) -> tuple[Tensor, Tensor, int]:
        """This process's mean training loss and accuracy over the epoch so far, and its images."""
        if not self.train_steps:
            return torch.tensor(float("nan")), torch.tensor(float("nan")), 0
        losses, logits, labels = zip(*self.train_steps)
        sizes = torch.tensor([len(y) for y in labels], device=losses[0].device)
        loss = (torch.stack(losses).float() * sizes).sum() / sizes.sum()
        return loss, (torch.cat(logits).argmax(-1) == torch.cat(labels)).float().mean(), int(sizes.sum())

    def _eval_step(self, batch: Batch, loss_metric: MeanMetric, acc_metric: MulticlassAccuracy) -> Tensor:
        x, y = batch
        logits = self(x)
        loss_metric.update(F.cross_entropy(logits, y), weight=y.numel())
        acc_metric.update(logits, y)
        return logits

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_loss, self.val_acc)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        logits = self._eval_step(batch, self.test_loss, self.test_acc)
        self.test_confusion.update(logits, batch[1])
        if len(self._test_mistakes) < MISTAKES_SHOWN:
            x, y = batch
            wrong = (logits.argmax(-1) != y).nonzero().flatten()[:MISTAKES_SHOWN]
            self._test_mistakes += zip(x[wrong].cpu(), y[wrong].cpu(), logits.argmax(-1)[wrong].cpu())

    # Metrics are logged once per epoch: logging a metric object costs about a millisecond a call.
    def on_train_epoch_end(self) -> None:
        loss, accuracy, images = self.train_epoch_metrics()
        if images > 0:
            self.train_loss.update(loss, weight=images)
            self.train_acc.update(accuracy, weight=images)
        self.log_dict({"train/loss": self.train_loss, "train/acc": self.train_acc}, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.log_dict({"val/loss": self.val_loss, "val/acc": self.val_acc}, prog_bar=True)
        if not self.trainer.sanity_checking:  # the untrained model's score is not a best
            self.val_acc_best(self.val_acc.compute())
            self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)  # equal on every rank

    def on_test_epoch_end(self) -> None:
        self.log_dict({"test/loss": self.test_loss, "test/acc": self.test_acc})
        matrix = self.test_confusion.compute().cpu().numpy()  # rows: labels
        mistakes = self._test_mistakes[:MISTAKES_SHOWN]
        self.test_confusion.reset()
        self._test_mistakes = []
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("test/confusion_matrix", plots.confusion_matrix(matrix), self.global_step)
                if mistakes:
                    images, labels, preds = (torch.stack(t) for t in zip(*mistakes))
                    titles = [f"{label}/{pred}" for label, pred in zip(labels.tolist(), preds.tolist())]
                    grid = plots.digit_grid(images[:, 0].numpy(), titles, [True] * len(titles), columns=8)
                    logger.experiment.add_figure("test/mistakes", grid, self.global_step)

    def predict_step(self, batch: Batch | Tensor, batch_idx: int) -> Tensor:
        """Class probabilities for a batch of images (labels, if present, are ignored)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=-1)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = instantiate(self.hparams.scheduler)
        if "total_steps" in inspect.signature(scheduler.func).parameters:
            # A schedule over the whole run (one-cycle) is stepped after every optimizer step.
            steps = int(self.trainer.estimated_stepping_batches)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler(optimizer=optimizer, total_steps=steps), "interval": "step"},
            }
        return {"optimizer": optimizer, "lr_scheduler": scheduler(optimizer=optimizer)}  # stepped per epoch

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: Any,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        trust: tuple[str, ...] | list[str] = (),
        **kwargs: Any,
    ) -> Classifier:
        """Lightning's loader, after refusing a checkpoint whose hyperparameters name code that is not
        trusted: mnist_lab's networks, torch's optimizers and what `trust` names (see mnist_lab.checkpoints.trust)."""
        weights_only = True if weights_only is None else weights_only
        start = checkpoint_path.tell() if hasattr(checkpoint_path, "seek") else None
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=weights_only)
        if start is not None:
            checkpoint_path.seek(start)  # read again below
        if hparams_file is not None:  # Lightning builds from this file instead of the checkpoint's own
            read = load_hparams_from_tags_csv if str(hparams_file).lower().endswith(".csv") else load_hparams_from_yaml
            hparams = read(hparams_file)
        else:
            hparams = checkpoint.get(cls.CHECKPOINT_HYPER_PARAMS_KEY, {}) if isinstance(checkpoint, dict) else {}
        # Values passed here replace the file's: they are the caller's own, not the file's.
        check_targets({k: v for k, v in dict(hparams).items() if k not in kwargs}, trust, source=str(checkpoint_path))
        return super().load_from_checkpoint(
            checkpoint_path,
            map_location=map_location,
            hparams_file=hparams_file,
            strict=strict,
            weights_only=weights_only,
            **kwargs,
        )
