"""Where a dataset's idx files come from (a data folder, the packaged copy or a download), and
reading them, gzipped or not, into checked uint8 tensors."""

from __future__ import annotations

import gzip
import hashlib
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets
from torch import Tensor

from mnist_lab.errors import DataCorruptError, DataNotFoundError

log = logging.getLogger(__name__)

PACKAGED = Path(__file__).resolve().parent / "packaged"  # MNIST ships inside mnist_lab
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


@dataclass(frozen=True)
class Dataset:
    """A 28x28 ten-class dataset in the idx format: its files' known contents and where to look."""

    name: str  # torchvision's class and folder name
    md5: dict[str, str]  # md5 of each uncompressed file
    packaged: bool = False

    @property
    def files(self) -> tuple[str, ...]:
        return (*SPLITS["train"], *SPLITS["test"])


DATASETS = {
    "MNIST": Dataset(
        "MNIST",
        {
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
        packaged=True,
    ),
    "FashionMNIST": Dataset(
        "FashionMNIST",
        {
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
    ),
}


def dataset(name: str) -> Dataset:
    """The known dataset called `name` (MNIST or FashionMNIST)."""
    if name not in DATASETS:
        raise DataNotFoundError(f"data.dataset={name} is not a dataset mnist_lab knows; use one of {sorted(DATASETS)}")
    return DATASETS[name]


def find_copy(data: Dataset, folder: Path) -> dict[str, Path] | None:
    """The dataset's four files in `folder`, in torchvision's layout (<folder>/<name>/raw/) or flat
    (as Debian ships them), each gzipped or not; None when the folder holds no complete copy."""
    for candidate in (folder / data.name / "raw", folder / data.name, folder):
        found = {}
        for name in data.files:
            path = next((p for p in (candidate / name, candidate / f"{name}.gz") if p.is_file()), None)
            if path is None:
                break
            found[name] = path
        else:
            return found
    return None


def locate(data: Dataset, root: Path | None, download: bool) -> tuple[dict[str, Path], str]:
    """The files a run reads, and which copy they are: `root` when it holds one, else the packaged
    copy, else a download into `root` (./data when unset) if allowed."""
    target = root if root is not None else Path("data")
    if root is not None and (found := find_copy(data, root)):
        return found, f"data.root={root}"
    if data.packaged and (found := find_copy(data, PACKAGED)):
        return found, f"the copy packaged with mnist_lab ({PACKAGED / data.name})"
    if root is None and (found := find_copy(data, target)):
        return found, f"the download in {target.resolve()}"
    where = (target / data.name / "raw").resolve()
    if not download:
        raise DataNotFoundError(
            f"{data.name} files not found in {where} and download is off; set data.root=<folder that contains "
            f"{data.name}/> (or MNIST_LAB_DATA_DIR) to a copy, or allow downloading with data.download=true"
        )
    return fetch(data, target), f"a download into {where}"


def fetch(data: Dataset, target: Path) -> dict[str, Path]:
    """Download the dataset with torchvision into `target`; on failure remove the folders it made."""
    made = [p for p in (target, target / data.name, target / data.name / "raw") if not p.exists()]
    try:
        getattr(torchvision.datasets, data.name)(str(target), train=True, download=True)
        getattr(torchvision.datasets, data.name)(str(target), train=False, download=True)
    except (RuntimeError, OSError) as err:  # torchvision's "Error downloading" after every mirror failed
        for folder in reversed(made):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise DataNotFoundError(
            f"{data.name} files not found in {(target / data.name / 'raw').resolve()} and they could not be "
            f"downloaded; set data.root=<folder that contains {data.name}/> (or MNIST_LAB_DATA_DIR) to a copy"
        ) from err
    found = find_copy(data, target)
    assert found is not None, "torchvision downloaded the files to an unexpected place"
    return found


def read_idx(path: Path, fix: str) -> tuple[Tensor, str]:
    """An idx file (gzipped or not) as a uint8 tensor and the md5 of its contents, after checking
    its header and size; a damaged file raises DataCorruptError naming it and `fix`."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataCorruptError(f"{path} is not a complete gzip file ({err}); {fix}") from err
    if len(raw) < 8:
        raise DataCorruptError(f"{path} is truncated ({len(raw)} bytes, shorter than its header); {fix}")
    magic = int.from_bytes(raw[:4], "big")
    is_images = path.name.split("-")[1] == "images"
    want = IMAGE_MAGIC if is_images else LABEL_MAGIC
    if magic != want:
        kind = "image" if is_images else "label"
        raise DataCorruptError(f"{path} has magic number {magic}, not {want}: not an idx {kind} file; {fix}")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(3 if is_images else 1)]
    if is_images and dims[1:] != [28, 28]:
        raise DataCorruptError(f"{path} holds images of {tuple(dims[1:])} pixels, not 28x28; {fix}")
    header = 4 + 4 * len(dims)
    expected = header + dims[0] * (28 * 28 if is_images else 1)
    if len(raw) != expected:
        raise DataCorruptError(
            f"{path} has {len(raw)} bytes where its header promises {expected} ({dims[0]} items); {fix}"
        )
    items = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if not is_images and items.size and items.max() > 9:
        raise DataCorruptError(f"{path} holds label {items.max()}, outside the digits 0-9; {fix}")
    tensor = torch.from_numpy(items.copy())
    return (tensor.view(dims[0], 28, 28) if is_images else tensor), hashlib.md5(raw).hexdigest()


def load(data: Dataset, root: Path | None, download: bool = False) -> dict[str, tuple[Tensor, Tensor]]:
    """Both splits as (uint8 images (N, 28, 28), int64 labels), from the copy `locate` picks."""
    files, source = locate(data, root, download)
    log.info("%s: reading %s", data.name, source)
    packaged = str(files[data.files[0]]).startswith(str(PACKAGED))
    fix = (
        "reinstall mnist_lab (pip install --force-reinstall) to restore its packaged copy"
        if packaged
        else "replace it with a good copy (or delete it and run with data.download=true)"
    )
    splits = {}
    for split, (images_name, labels_name) in SPLITS.items():
        (images, images_md5), (labels, labels_md5) = (read_idx(files[n], fix) for n in (images_name, labels_name))
        if len(images) != len(labels):
            raise DataCorruptError(
                f"{files[images_name]} has {len(images)} images but {files[labels_name]} has "
                f"{len(labels)} labels; replace both with a good copy"
            )
        for name, digest in ((images_name, images_md5), (labels_name, labels_md5)):
            if digest != data.md5[name]:
                raise DataCorruptError(f"{files[name]} is not the known {data.name} file (its md5 differs); {fix}")
        splits[split] = images, labels.long()
    return splits
