"""MNIST as a LightningDataModule: the whole dataset held in memory as tensors, batches by indexing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from mnist_lab.data import files


class IndexBatches:
    """One epoch of indices cut into mini-batches of `batch_size`; when shuffling, the order is a
    permutation drawn from a generator seeded with `seed + epoch`, so each epoch has its own.

    Lightning calls `set_epoch` before every epoch on a loader's `sampler`, as it does for a
    DistributedSampler. With several processes (DDP), process `rank` of `world_size` takes every
    `world_size`-th index of the order all processes share; a shuffled epoch is first cut to a
    multiple of `world_size`, so that every process makes the same number of steps.
    """

    def __init__(
        self, size: int, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0
        self.rank, self.world_size, self.total = rank, world_size, size
        # This process's share: equal shares when shuffling (training), every index otherwise.
        self.size = size // world_size if shuffle else len(range(rank, size, world_size))

    def set_epoch(self, epoch: int) -> None:
        """Draw the next iteration's order for `epoch`."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        if self.shuffle:
            order = torch.randperm(self.total, generator=torch.Generator().manual_seed(self.seed + self.epoch))
            order = order[: self.size * self.world_size]
        else:
            order = torch.arange(self.total)
        return iter(order[self.rank :: self.world_size].split(self.batch_size))


class TensorBatches:
    """Mini-batches `(x, y)` built by indexing tensors held in memory (on the training device once
    moved there), in the order of `sampler`."""

    def __init__(self, data: TensorDataset, sampler: IndexBatches) -> None:
        self.x, self.y = data.tensors
        # A DataLoader's attribute names: Lightning calls `sampler.set_epoch` before every epoch.
        self.sampler, self.batch_sampler = sampler, None

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for index in self.sampler:
            index = index.to(self.x.device)
            yield self.x[index], self.y[index]


class MNISTDataModule(L.LightningDataModule):
    """The tutorial's split: validation = first 5,000 training images, train = the other 55,000,
    test = the official 10,000. Pixels are floats in [0, 1]; with `normalize` the training split's
    mean and std are measured for the model, which scales its own inputs.

    `augment`, a module such as `mnist_lab.data.augment.RandomAffine`, transforms training batches on
    the training device (validation, test and prediction batches are left as they are).
    """

    def __init__(
        self,
        dataset: str = "MNIST",
        root: str | Path | None = None,
        download: bool = True,
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        normalize: bool = False,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.dataset = files.dataset(dataset)
        self.root = Path(root).expanduser() if root else None
        self.download = download
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.normalize = normalize
        self.augment = augment
        self.mean, self.std = 0.0, 1.0  # the training split's, for the model's input scaling
        self.shuffle_seed = 0  # set by setup from torch's seed
        self.data_train: TensorDataset | None = None
        self.data_val: TensorDataset | None = None
        self.data_test: TensorDataset | None = None

    def prepare_data(self) -> None:
        """Download the dataset when no copy is found and downloads are allowed (setup reads it)."""
        files.locate(self.dataset, self.root, self.download)

    def setup(self, stage: str | None = None) -> None:
        """Load all images once as float tensors of shape (N, 1, 28, 28)."""
        if self.data_train is not None:
            return
        splits = files.load(self.dataset, self.root)
        (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
        train_x, test_x = _to_float(train_x), _to_float(test_x)
        val_x, train_x = train_x[: self.val_size], train_x[self.val_size :]
        val_y, train_y = train_y[: self.val_size], train_y[self.val_size :]
        if self.normalize:  # the statistics the Classifier scales its inputs with
            self.mean, self.std = train_x.mean().item(), train_x.std().item()
        self.data_train = TensorDataset(train_x, train_y)
        self.data_val = TensorDataset(val_x, val_y)
        self.data_test = TensorDataset(test_x, test_y)
        # Seeded by seed_everything when a seed is set, so the shuffle order is repeatable.
        self.shuffle_seed = torch.initial_seed() % 2**62

    @property
    def dataset_name(self) -> str:
        """The dataset's name, e.g. "MNIST" or "FashionMNIST"."""
        return self.dataset.name

    def state_dict(self) -> dict[str, int]:
        """Saved in every checkpoint: the shuffle's seed, so that a resumed run keeps its orders."""
        return {"shuffle_seed": self.shuffle_seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """On resume, continue the interrupted run's sequence of per-epoch orders."""
        self.shuffle_seed = state_dict.get("shuffle_seed", self.shuffle_seed)

    def _on_device(self, data: TensorDataset) -> TensorDataset:
        """Move a split to the training device once, so that batches never cross the bus."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if data.tensors[0].device != device:
            data.tensors = tuple(t.to(device) for t in data.tensors)
        return data

    def _batches(self, data: TensorDataset, batch_size: int, shuffle: bool) -> TensorBatches:
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = IndexBatches(len(data), batch_size, shuffle, self.shuffle_seed, rank, world_size)
        return TensorBatches(self._on_device(data), sampler)

    def train_dataloader(self) -> TensorBatches:
        overfit = self.trainer is not None and self.trainer.overfit_batches > 0  # the same batches every epoch
        return self._batches(self.data_train, self.batch_size, shuffle=not overfit)

    def val_dataloader(self) -> TensorBatches:
        return self._batches(self.data_val, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._batches(self.data_test, self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> TensorBatches:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Training batches only: not the model summary's or the graph's example input.
        training = self.trainer is not None and self.trainer.training and isinstance(batch, (tuple, list))
        if self.augment is not None and training:
            x, y = batch
            return self.augment(x), y
        return batch


def _to_float(images: Tensor) -> Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1], as the tutorial feeds its models."""
    return images.unsqueeze(1).to(torch.float32).div_(255)
