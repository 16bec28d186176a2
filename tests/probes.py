"""Callbacks that test runs name by import path (`+callbacks.x={_target_: probes.Recorder, ...}`, with
tests/ on PYTHONPATH): what Lightning's per-step hooks see (the Trainer-flag tests), what each DDP
process trained on, and steps slowed down so that a signal or a requeue lands where a test wants it."""

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import torch


def grad_norm(module: torch.nn.Module) -> float:
    return torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in module.parameters() if p.grad is not None])
    ).item()


def grad_max(module: torch.nn.Module) -> float:
    return max(p.grad.abs().max().item() for p in module.parameters() if p.grad is not None)


class Recorder(L.Callback):
    """Writes `path`: hook call counts, each epoch's first labels, batch sizes, gradient sizes
    before (on_before_optimizer_step) and after (on_train_batch_end) Lightning clips them."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.calls: Counter[str] = Counter()
        self.record: dict[str, Any] = {
            "first_labels": [],
            "train_batch_sizes": [],
            "val_batches": 0,
            "grad_norm_before": [],
            "grad_max_before": [],
            "grad_norm_after": [],
            "grad_max_after": [],
            "first_pixels": [],
            "global_steps": [],
        }

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.calls["train_batch"] += 1
        self.record["train_batch_sizes"].append(len(batch[1]))
        if batch_idx == 0:
            self.record["first_labels"].append(batch[1][:12].tolist())
            self.record["first_pixels"].append(batch[0][:4].double().sum().item())

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        self.calls["before_backward"] += 1

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.calls["after_backward"] += 1

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        self.calls["before_optimizer_step"] += 1
        self.record["grad_norm_before"].append(grad_norm(pl_module))
        self.record["grad_max_before"].append(grad_max(pl_module))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.record["global_steps"].append(trainer.global_step)
        if any(p.grad is not None for p in pl_module.parameters()):
            self.record["grad_norm_after"].append(grad_norm(pl_module))
            self.record["grad_max_after"].append(grad_max(pl_module))

    def on_validation_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if not trainer.sanity_checking:
            self.record["val_batches"] += 1

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record["calls"] = dict(self.calls)
        self.record["precision"] = trainer.precision
        self.record["global_step"] = trainer.global_step
        self.path.write_text(json.dumps(self.record))


class Probe(L.Callback):
    """Writes probe_rank<r>.json: a digest of the final weights and of the labels of every batch."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.labels: list[int] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.labels += batch[1].flatten().tolist()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        weights = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        record = {
            "weights": weights.double().sum().item(),
            "weights_abs": weights.double().abs().sum().item(),
            "labels": self.labels,
        }
        (self.folder / f"probe_rank{trainer.global_rank}.json").write_text(json.dumps(record))


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
