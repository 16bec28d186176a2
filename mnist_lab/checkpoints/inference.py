"""The one way mnist_lab runs a trained model: the module's own predict_step, on the data it was trained for."""

from __future__ import annotations

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from mnist_lab.checkpoints.load import LoadedModel
from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.errors import UserError


def datamodule_for(loaded: LoadedModel, data_cfg: DictConfig) -> MNISTDataModule:
    """The `data=` config's datamodule, set up for testing, once it is known to be the model's dataset."""
    datamodule = instantiate(data_cfg)
    if datamodule.dataset_name != loaded.dataset:
        raise UserError(
            f"{loaded.path} was trained on {loaded.dataset}, not {datamodule.dataset_name}; "
            f"choose the matching data= config (data=mnist or data=fashion_mnist)"
        )
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule


def probabilities(model: L.LightningModule, pixels: Tensor, batch_size: int = 1000) -> Tensor:
    """Class probabilities (N, 10) for images (N, 1, 28, 28) with pixels in [0, 1], by `predict_step`."""
    with torch.inference_mode():
        chunks = pixels.split(batch_size)
        return torch.cat([model.predict_step(chunk.to(model.device), i).cpu() for i, chunk in enumerate(chunks)])
