"""Classifier: the one LightningModule that trains, tests and predicts with any network."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import Tensor
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from mnist_lab import plots
from mnist_lab.errors import NonFiniteLossError
from mnist_lab.nets import IMAGE_SHAPE, NUM_CLASSES

Batch = tuple[Tensor, Tensor]
MISTAKES_SHOWN = 16  # misclassified test digits drawn in TensorBoard


class Classifier(L.LightningModule):
    """Cross-entropy training of the network described by `net` with the optimizer `optimizer`.

    Both are config mappings with a `_target_` (the optimizer `_partial_`), stored as
    hyperparameters so that `Classifier.load_from_checkpoint(path)` alone rebuilds the model.
    `scheduler`, if given, is a `_partial_` learning-rate scheduler stepped once per epoch;
    `compile=True` runs the training steps through torch.compile.

    Training batches may be stacks of K mini-batches, shaped (K, B, 1, 28, 28): one training_step
    then makes K optimizer steps, one per mini-batch, so Lightning's per-step cost is paid once per
    K steps (like Keras' `steps_per_execution`). On a single device without a gradient scaler the
    steps go straight to torch; Lightning's per-step backward and optimizer-step hooks are then not
    called (they still are with DDP or 16-bit mixed precision).
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.automatic_optimization = False  # training_step makes its own optimizer steps
        self.net = instantiate(net)
        self.example_input_array = torch.zeros(1, *IMAGE_SHAPE)
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.train_acc, self.val_acc, self.test_acc = (
            MulticlassAccuracy(NUM_CLASSES, average="micro", validate_args=False) for _ in range(3)
        )
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run knows its best
        self.test_confusion = MulticlassConfusionMatrix(NUM_CLASSES, validate_args=False)
        self._test_mistakes: list[tuple[Tensor, Tensor, Tensor]] = []
        self._direct_steps = False
        self._compiled_forward: Callable[[Tensor], Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images shaped (N, 1, 28, 28)."""
        return self.net(x)

    def on_fit_start(self) -> None:
        precision = self.trainer.precision_plugin
        self._direct_steps = isinstance(self.trainer.strategy, SingleDeviceStrategy) and (
            getattr(precision, "scaler", None) is None
        )

    def on_train_start(self) -> None:
        if self.hparams.compile and self._compiled_forward is None:
            # Training steps only: a compiled function (not a submodule) leaves checkpoint keys and
            # TensorBoard's graph tracing (torch.jit cannot trace compiled code) untouched.
            self._compiled_forward = torch.compile(self.net.forward)

    def on_train_epoch_start(self) -> None:
        # Stepped as an epoch begins, so that a checkpoint from the end of epoch N resumes with
        # the schedule of epoch N + 1.
        if self.current_epoch > 0 and (scheduler := self.lr_schedulers()) is not None:
            scheduler.step()

    def _optimizer_step(self, optimizer: L.pytorch.core.optimizer.LightningOptimizer, loss: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        if self._direct_steps:
            loss.backward()
            optimizer._on_before_step()  # Lightning's step counter (trainer.global_step)
            optimizer.optimizer.step()
            optimizer._on_after_step()
        else:
            self.manual_backward(loss)
            optimizer.step()

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        """One optimizer step per mini-batch; a stack of K mini-batches makes K steps."""
        x, y = batch
        if x.dim() == 4:
            x, y = x.unsqueeze(0), y.unsqueeze(0)
        optimizer = self.optimizers()
        forward = self._compiled_forward or self.net
        losses, logits = [], []
        for xb, yb in zip(x, y):
            out = forward(xb)
            loss = F.cross_entropy(out, yb)
            self._optimizer_step(optimizer, loss)
            losses.append(loss.detach())
            logits.append(out.detach())
        losses = torch.stack(losses)
        # One check and one metric update per call, not per mini-batch.
        if not torch.isfinite(losses).all():
            bad = losses[~torch.isfinite(losses)][0].item()
            raise NonFiniteLossError(
                f"the training loss became {bad} in epoch {self.current_epoch + 1}, so training stopped; "
                "the checkpoints saved before it are kept; lower optimizer.lr and train again"
            )
        self.train_loss.update(losses, weight=y.shape[1])
        self.train_acc.update(torch.cat(logits), y.flatten())

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
        self.log_dict({"train/loss": self.train_loss, "train/acc": self.train_acc}, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.log_dict({"val/loss": self.val_loss, "val/acc": self.val_acc}, prog_bar=True)
        if not self.trainer.sanity_checking:  # the untrained model's score is not a best
            self.val_acc_best(self.val_acc.compute())
            self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)  # equal on every rank

    def on_test_epoch_end(self) -> None:
        self.log_dict({"test/loss": self.test_loss, "test/acc": self.test_acc})
        matrix = self.test_confusion.compute().cpu().numpy()
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
        return {"optimizer": optimizer, "lr_scheduler": instantiate(self.hparams.scheduler)(optimizer=optimizer)}
