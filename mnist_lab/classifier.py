"""Classifier: the one LightningModule that trains, tests and predicts with any network."""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_lab.nets import IMAGE_SHAPE, NUM_CLASSES

Batch = tuple[Tensor, Tensor]


class Classifier(L.LightningModule):
    """Cross-entropy training of the network described by `net` with the optimizer `optimizer`.

    Both are config mappings with a `_target_` (the optimizer `_partial_`), stored as
    hyperparameters so that `Classifier.load_from_checkpoint(path)` alone rebuilds the model.
    """

    def __init__(self, net: Mapping[str, Any], optimizer: Mapping[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.net = instantiate(net)
        self.example_input_array = torch.zeros(1, *IMAGE_SHAPE)
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.train_acc, self.val_acc, self.test_acc = (
            MulticlassAccuracy(NUM_CLASSES, average="micro") for _ in range(3)
        )
        self.val_acc_best = MaxMetric()

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images shaped (N, 1, 28, 28)."""
        return self.net(x)

    def _shared_step(self, batch: Batch, loss_metric: MeanMetric, acc_metric: MulticlassAccuracy) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        loss_metric.update(loss, weight=y.numel())
        acc_metric.update(logits, y)
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self._shared_step(batch, self.train_loss, self.train_acc)
        # Metric objects: Lightning computes them once per epoch, no per-step host sync.
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_train_start(self) -> None:
        # Sanity-check validation must not count towards the best validation accuracy.
        self.val_acc_best.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, self.val_loss, self.val_acc)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute())

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, self.test_loss, self.test_acc)
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)

    def predict_step(self, batch: Batch | Tensor, batch_idx: int) -> Tensor:
        """Class probabilities for a batch of images (labels, if present, are ignored)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return instantiate(self.hparams.optimizer)(params=self.parameters())
