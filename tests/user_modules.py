"""LightningModules of a user's own, outside mnist_lab: what `model._target_` and `trust=[...]` let run."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from mnist_lab.models.classifier import Classifier


class SmoothedClassifier(Classifier):
    """mnist_lab's Classifier trained with label smoothing: a subclass with an argument of its own."""

    def __init__(self, smoothing: float = 0.1, **classifier: Any) -> None:
        super().__init__(**classifier)

    def step_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.smoothing)
        self.train_loss.update(loss.detach(), weight=y.numel())
        self.train_acc.update(logits.detach(), y)
        return loss


class TinyModule(L.LightningModule):
    """A LightningModule with nothing of mnist_lab in it: one linear layer, logits out of forward,
    class probabilities out of predict_step."""

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(784, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x.flatten(1))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        self.log("train/acc", (logits.argmax(-1) == y).float().mean(), on_epoch=True, on_step=False)
        return F.cross_entropy(logits, y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val/acc", (self(x).argmax(-1) == y).float().mean())

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("test/acc", (self(x).argmax(-1) == y).float().mean())

    def predict_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return self(batch).softmax(-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
