"""What predict, evaluate and export share: the official test images and batched inference."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from mnist_lab.checkpoints import LoadedModel
from mnist_lab.errors import UserError


def test_images(loaded: LoadedModel, data_cfg: DictConfig) -> tuple[Tensor, Tensor]:
    """The official test set as pixels in [0, 1] (N, 1, 28, 28) and labels, from the model's dataset."""
    datamodule = instantiate(data_cfg)
    if datamodule.dataset_name != loaded.dataset:
        raise UserError(
            f"{loaded.path} was trained on {loaded.dataset}, not {datamodule.dataset_name}; "
            f"choose the matching data= config (data=mnist or data=fashion_mnist)"
        )
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule.data_test.tensors


@torch.no_grad()
def logits(loaded: LoadedModel, pixels: Tensor, batch_size: int = 1000) -> Tensor:
    """The model's logits for images with pixels in [0, 1] (the model scales them itself)."""
    device = loaded.model.device
    return torch.cat([loaded.model(chunk.to(device)).cpu() for chunk in pixels.split(batch_size)])
