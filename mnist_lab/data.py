"""MNIST as a LightningDataModule: the whole dataset held in memory as tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset
from torchvision.datasets import MNIST

from mnist_lab.errors import DataNotFoundError

DatasetFactory = Callable[..., MNIST]


def batch_loader(dataset: TensorDataset, batch_size: int, shuffle: bool) -> DataLoader:
    """A DataLoader that builds each batch with one tensor index, not one sample at a time."""
    order = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    # batch_size=None: the sampler yields whole index lists and TensorDataset indexes with them.
    return DataLoader(dataset, sampler=BatchSampler(order, batch_size, drop_last=False), batch_size=None)


class MNISTDataModule(L.LightningDataModule):
    """The tutorial's split: validation = first 5,000 training images, train = the other 55,000,
    test = the official 10,000. Pixels are floats in [0, 1] unless `normalize` is set."""

    def __init__(
        self,
        dataset: DatasetFactory = MNIST,
        root: str | Path = "data",
        download: bool = True,
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.root = Path(root).expanduser()
        self.download = download
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.normalize = normalize
        self.data_train: TensorDataset | None = None
        self.data_val: TensorDataset | None = None
        self.data_test: TensorDataset | None = None

    def _load(self, train: bool, download: bool = False) -> MNIST:
        try:
            return self.dataset(str(self.root), train=train, download=download)
        except RuntimeError as err:  # torchvision's "Dataset not found" and "Error downloading"
            name = getattr(self.dataset, "func", self.dataset).__name__
            fix = "" if download else ", or allow downloading with data.download=true"
            raise DataNotFoundError(
                f"{name} files not found in {self.root.resolve() / name / 'raw'} "
                f"and {'they could not be downloaded' if download else 'download is off'}; "
                f"set data.root=<folder that contains {name}/> (or MNIST_LAB_DATA_DIR) to a copy{fix}"
            ) from err

    def prepare_data(self) -> None:
        """Download the dataset if it is missing and downloads are allowed."""
        self._load(train=True, download=self.download)
        self._load(train=False, download=self.download)

    def setup(self, stage: str | None = None) -> None:
        """Load all images once as float tensors of shape (N, 1, 28, 28)."""
        if self.data_train is not None:
            return
        train, test = self._load(train=True), self._load(train=False)
        train_x, test_x = _to_float(train.data), _to_float(test.data)
        val_x, train_x = train_x[: self.val_size], train_x[self.val_size :]
        val_y, train_y = train.targets[: self.val_size], train.targets[self.val_size :]
        if self.normalize:
            mean, std = train_x.mean(), train_x.std()
            train_x, val_x, test_x = ((x - mean) / std for x in (train_x, val_x, test_x))
        self.data_train = TensorDataset(train_x, train_y)
        self.data_val = TensorDataset(val_x, val_y)
        self.data_test = TensorDataset(test_x, test.targets)

    def train_dataloader(self) -> DataLoader:
        return batch_loader(self.data_train, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return batch_loader(self.data_val, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return batch_loader(self.data_test, self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


def _to_float(images: Tensor) -> Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1], as the tutorial feeds its models."""
    return images.unsqueeze(1).to(torch.float32).div_(255)
