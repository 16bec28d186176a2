"""MNIST as a LightningDataModule: the whole dataset held in memory as tensors, batches by indexing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset
from torchvision.datasets import MNIST

from mnist_lab.errors import DataCorruptError, DataNotFoundError

# Each split's idx files: (name, magic number, shape of one item).
IDX_FILES = {
    True: [("train-images-idx3-ubyte", 2051, (28, 28)), ("train-labels-idx1-ubyte", 2049, ())],
    False: [("t10k-images-idx3-ubyte", 2051, (28, 28)), ("t10k-labels-idx1-ubyte", 2049, ())],
}


def check_idx_files(raw_dir: Path, train: bool) -> None:
    """Check a split's idx files before torchvision reads them: magic number, item shape, file size,
    equal image and label counts, and labels that are digits 0-9."""
    counts = []
    for name, magic, shape in IDX_FILES[train]:
        path = raw_dir / name
        if not path.is_file():
            return  # missing files are torchvision's "not found", reported by _load
        fix = f"replace {path} with a good copy (or delete it and run online with data.download=true)"
        header_size = 4 * (2 + len(shape))
        with path.open("rb") as f:
            head = f.read(header_size)
            labels = f.read() if not shape else b""
        if len(head) < header_size:
            raise DataCorruptError(f"{path} is truncated ({len(head)} bytes, shorter than its header); {fix}")
        header = [int.from_bytes(head[i : i + 4], "big") for i in range(0, header_size, 4)]
        if header[0] != magic:
            kind = "image" if shape else "label"
            raise DataCorruptError(f"{path} has magic number {header[0]}, not {magic}: not an idx {kind} file; {fix}")
        if tuple(header[2:]) != shape:
            raise DataCorruptError(f"{path} holds images of {tuple(header[2:])} pixels, not 28x28; {fix}")
        size, expected = path.stat().st_size, header_size + header[1] * (28 * 28 if shape else 1)
        if size != expected:
            raise DataCorruptError(f"{path} has {size} bytes where its header promises {expected} "
                                   f"({header[1]} items); {fix}")
        if labels and max(labels) > 9:
            raise DataCorruptError(f"{path} holds label {max(labels)}, outside the digits 0-9; {fix}")
        counts.append(header[1])
    if counts[0] != counts[1]:
        images, labels = (raw_dir / name for name, _, _ in IDX_FILES[train])
        raise DataCorruptError(f"{images} has {counts[0]} images but {labels} has {counts[1]} labels; "
                               "replace both with a good copy")


DatasetFactory = Callable[..., MNIST]


class IndexBatches:
    """One epoch of indices: mini-batches of `batch_size`, shuffled by a generator seeded with
    `seed + epoch`, grouped `batches_per_step` at a time into (K, B) tensors.

    With several processes (DDP), process `rank` of `world_size` takes every `world_size`-th index
    of the order all processes share, as DistributedSampler does; a shuffled epoch is first cut to
    a multiple of `world_size`, so that every process makes the same number of steps.
    Lightning calls `set_epoch` before each epoch, as it does for a DataLoader's batch sampler.
    """

    def __init__(self, size: int, batch_size: int, shuffle: bool, batches_per_step: int = 1, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.batch_size, self.shuffle = batch_size, shuffle
        self.batches_per_step, self.seed, self.epoch = batches_per_step, seed, 0
        self.rank, self.world_size, self.total = rank, world_size, size
        # This process's share: equal shares when shuffling (training), every index otherwise.
        self.size = size // world_size if shuffle else len(range(rank, size, world_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return -(-full // self.batches_per_step) + (rest > 0)

    def __iter__(self) -> Iterator[Tensor]:
        if self.shuffle:
            order = torch.randperm(self.total, generator=torch.Generator().manual_seed(self.seed + self.epoch))
            order = order[: self.size * self.world_size]
        else:
            order = torch.arange(self.total)
        order = order[self.rank :: self.world_size]
        full = self.size // self.batch_size
        grouped = order[: full * self.batch_size].view(full, self.batch_size)
        for start in range(0, full, self.batches_per_step):
            yield grouped[start : start + self.batches_per_step]
        if full * self.batch_size < self.size:  # the short last batch, on its own
            yield order[full * self.batch_size :].view(1, -1)


class TensorBatches:
    """Batches built by indexing tensors held in memory (on the training device once moved there).

    With `batches_per_step == 1` each item is one mini-batch `(x, y)`; otherwise a stack of
    mini-batches shaped (K, B, 1, 28, 28) and (K, B), which the Classifier steps through one
    optimizer step per mini-batch.
    """

    def __init__(self, data: TensorDataset, batch_sampler: IndexBatches) -> None:
        self.x, self.y = data.tensors
        self.batch_sampler = batch_sampler

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        stacked = self.batch_sampler.batches_per_step > 1
        for index in self.batch_sampler:
            index = index.to(self.x.device) if stacked else index[0].to(self.x.device)
            yield self.x[index], self.y[index]


class MNISTDataModule(L.LightningDataModule):
    """The tutorial's split: validation = first 5,000 training images, train = the other 55,000,
    test = the official 10,000. Pixels are floats in [0, 1] unless `normalize` is set.

    `augment`, a module such as `mnist_lab.augment.RandomAffine`, transforms training batches on
    the training device (validation, test and prediction batches are left as they are).
    """

    def __init__(
        self,
        dataset: DatasetFactory = MNIST,
        root: str | Path = "data",
        download: bool = True,
        batch_size: int = 100,
        batches_per_step: int = 1,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        normalize: bool = False,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.root = Path(root).expanduser()
        self.download = download
        self.batch_size = batch_size
        self.batches_per_step = batches_per_step
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.normalize = normalize
        self.augment = augment
        self.mean, self.std = 0.0, 1.0  # input scaling: (pixels - mean) / std
        self.shuffle_seed = 0  # set by setup from torch's seed
        self.data_train: TensorDataset | None = None
        self.data_val: TensorDataset | None = None
        self.data_test: TensorDataset | None = None

    def _load(self, train: bool, download: bool = False) -> MNIST:
        check_idx_files(self.root / self.dataset_name / "raw", train)
        try:
            return self.dataset(str(self.root), train=train, download=download)
        except RuntimeError as err:  # torchvision's "Dataset not found" and "Error downloading"
            name = self.dataset_name
            fix = "" if download else ", or allow downloading with data.download=true"
            raise DataNotFoundError(
                f"{name} files not found in {self.root.resolve() / name / 'raw'} "
                f"and {'they could not be downloaded' if download else 'download is off'}; "
                f"set data.root=<folder that contains {name}/> (or MNIST_LAB_DATA_DIR) to a copy{fix}"
            ) from err

    def prepare_data(self) -> None:
        """Download the dataset if it is missing and downloads are allowed (setup reads it)."""
        raw = self.root / self.dataset_name / "raw"
        for train, files in IDX_FILES.items():
            if not all((raw / name).is_file() for name, _, _ in files):
                self._load(train, download=self.download)

    def setup(self, stage: str | None = None) -> None:
        """Load all images once as float tensors of shape (N, 1, 28, 28)."""
        if self.data_train is not None:
            return
        train, test = self._load(train=True), self._load(train=False)
        train_x, test_x = _to_float(train.data), _to_float(test.data)
        val_x, train_x = train_x[: self.val_size], train_x[self.val_size :]
        val_y, train_y = train.targets[: self.val_size], train.targets[self.val_size :]
        if self.normalize:
            self.mean, self.std = train_x.mean().item(), train_x.std().item()
            train_x, val_x, test_x = ((x - self.mean) / self.std for x in (train_x, val_x, test_x))
        self.data_train = TensorDataset(train_x, train_y)
        self.data_val = TensorDataset(val_x, val_y)
        self.data_test = TensorDataset(test_x, test.targets)
        # Seeded by seed_everything when a seed is set, so the shuffle order is repeatable.
        self.shuffle_seed = torch.initial_seed() % 2**62

    @property
    def dataset_name(self) -> str:
        """The torchvision dataset class's name, e.g. "MNIST" or "FashionMNIST"."""
        return getattr(self.dataset, "func", self.dataset).__name__

    def state_dict(self) -> dict[str, str | float]:
        """Saved in every checkpoint, so that a checkpoint alone says how to feed its model."""
        return {"dataset": self.dataset_name, "mean": self.mean, "std": self.std}

    def _on_device(self, data: TensorDataset) -> TensorDataset:
        """Move a split to the training device once, so that batches never cross the bus."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if data.tensors[0].device != device:
            data.tensors = tuple(t.to(device) for t in data.tensors)
        return data

    def _batches(self, data: TensorDataset, batch_size: int, shuffle: bool, batches_per_step: int = 1) -> TensorBatches:
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = IndexBatches(len(data), batch_size, shuffle, batches_per_step, self.shuffle_seed, rank, world_size)
        return TensorBatches(self._on_device(data), sampler)

    def train_dataloader(self) -> TensorBatches:
        return self._batches(self.data_train, self.batch_size, shuffle=True, batches_per_step=self.batches_per_step)

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
            if self.normalize:  # transform pixels in [0, 1], where the background that moves in is 0
                return (self.augment(x * self.std + self.mean) - self.mean) / self.std, y
            return self.augment(x), y
        return batch


def _to_float(images: Tensor) -> Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1], as the tutorial feeds its models."""
    return images.unsqueeze(1).to(torch.float32).div_(255)
