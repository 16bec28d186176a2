"""A callback for the DDP tests: each process records its weights and the labels it trained on."""

import json
from pathlib import Path

import lightning as L
import torch


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
