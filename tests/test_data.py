"""MNISTDataModule: the tutorial's split, in-memory batches, file handling and missing data."""

from __future__ import annotations

import gzip
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torchvision.datasets import MNIST

from conftest import DATA_DIR, requires_mnist, run_cli
from torch.utils.data import TensorDataset

from mnist_lab.data import IndexBatches, MNISTDataModule, TensorBatches
from mnist_lab.errors import DataNotFoundError

FASHION_GZ = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist


def read_idx(path: Path) -> np.ndarray:
    """Read an uncompressed idx file (images or labels) with numpy alone."""
    raw = path.read_bytes()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the MNIST idx format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def mnist() -> MNISTDataModule:
    if not DATA_DIR:
        pytest.skip("set MNIST_LAB_DATA_DIR")
    dm = MNISTDataModule(root=DATA_DIR, download=False)
    dm.setup()
    return dm


@requires_mnist
def test_split_is_55000_train_5000_validation_10000_official_test(mnist):
    assert (len(mnist.data_train), len(mnist.data_val), len(mnist.data_test)) == (55_000, 5_000, 10_000)


@requires_mnist
def test_validation_is_the_first_5000_training_images_and_test_the_official_set(mnist):
    raw = Path(DATA_DIR) / "MNIST" / "raw"
    train_images = read_idx(raw / "train-images-idx3-ubyte")
    train_labels = read_idx(raw / "train-labels-idx1-ubyte")
    val_x, val_y = mnist.data_val.tensors
    train_x, train_y = mnist.data_train.tensors
    test_x, test_y = mnist.data_test.tensors
    assert torch.equal(val_x[:, 0], torch.from_numpy(train_images[:5000]).float() / 255)
    assert torch.equal(val_y, torch.from_numpy(train_labels[:5000]).long())
    assert torch.equal(train_x[0, 0], torch.from_numpy(train_images[5000]).float() / 255)
    assert torch.equal(train_y, torch.from_numpy(train_labels[5000:]).long())
    assert torch.equal(test_y, torch.from_numpy(read_idx(raw / "t10k-labels-idx1-ubyte")).long())


@requires_mnist
def test_pixels_are_float32_in_0_1_shaped_n_1_28_28_with_int64_labels(mnist):
    for x, y in (mnist.data_train.tensors, mnist.data_val.tensors, mnist.data_test.tensors):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert x.min().item() == 0.0 and x.max().item() == 1.0
        assert y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))


@requires_mnist
def test_training_batches_are_100_shuffled_images_covering_the_split_once_per_epoch(mnist):
    batches = list(mnist.train_dataloader())
    assert len(batches) == 550 and all(x.shape == (100, 1, 28, 28) for x, _ in batches)
    seen = torch.cat([x.flatten(1).sum(1) for x, _ in batches]).sort().values
    assert torch.allclose(seen, mnist.data_train.tensors[0].flatten(1).sum(1).sort().values)
    assert not torch.equal(batches[0][1], mnist.data_train.tensors[1][:100])
    mnist.batches_per_step = 10  # the config's default: stacks of ten mini-batches, same order
    stacks = list(mnist.train_dataloader())
    mnist.batches_per_step = 1
    assert len(stacks) == 55 and stacks[0][0].shape == (10, 100, 1, 28, 28)
    assert torch.equal(torch.cat([y.flatten() for _, y in stacks]), torch.cat([y for _, y in batches]))


@requires_mnist
def test_evaluation_batches_keep_dataset_order_and_drop_nothing(mnist):
    xs, ys = zip(*mnist.test_dataloader())
    assert torch.equal(torch.cat(ys), mnist.data_test.tensors[1])
    assert sum(len(x) for x in xs) == 10_000


@requires_mnist
def test_normalize_flag_standardises_with_training_statistics():
    dm = MNISTDataModule(root=DATA_DIR, download=False, normalize=True)
    dm.setup()
    train_x = dm.data_train.tensors[0]
    assert abs(train_x.mean().item()) < 1e-4 and abs(train_x.std().item() - 1) < 1e-4
    assert abs(dm.data_test.tensors[0].mean().item()) < 0.05


def test_reads_its_own_small_idx_files_pixel_for_pixel(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_images, test_images = rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 256, (8, 28, 28))
    train_labels, test_labels = rng.integers(0, 10, 30), rng.integers(0, 10, 8)
    for name, array in [("train-images-idx3-ubyte", train_images), ("train-labels-idx1-ubyte", train_labels),
                        ("t10k-images-idx3-ubyte", test_images), ("t10k-labels-idx1-ubyte", test_labels)]:
        write_idx(raw / name, array)

    dm = MNISTDataModule(root=tmp_path, download=False, val_size=10, batch_size=4)
    dm.setup()
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (20, 10, 8)
    assert torch.equal(dm.data_val.tensors[0][:, 0] * 255, torch.from_numpy(train_images[:10]).float())
    assert torch.equal(dm.data_train.tensors[1], torch.from_numpy(train_labels[10:]))
    assert torch.equal(dm.data_test.tensors[0][:, 0] * 255, torch.from_numpy(test_images).float())
    assert [len(y) for _, y in dm.train_dataloader()] == [4, 4, 4, 4, 4]


def test_missing_data_without_download_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        MNISTDataModule(root=tmp_path, download=False).prepare_data()
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "data.root=" in message
    assert "data.download=true" in message


def test_missing_data_that_cannot_be_downloaded_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens on the discard port
    with pytest.raises(DataNotFoundError, match="could not be downloaded.*data.root="):
        MNISTDataModule(root=tmp_path, download=True).prepare_data()


def test_missing_data_on_the_command_line_is_one_error_line_and_exit_code_1(tmp_path):
    result = run_cli(f"data.root={tmp_path / 'nowhere'}", "data.download=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() + result.stdout.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "nowhere/MNIST/raw" in errors[0] and "data.root=" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_dataset_class_comes_from_config(compose_cfg):
    cfg = compose_cfg("data=fashion_mnist")
    dm = instantiate(cfg.data)
    assert isinstance(dm.dataset, partial) and dm.dataset.func.__name__ == "FashionMNIST"
    assert dm.batch_size == 100 and dm.val_size == 5000


@pytest.mark.skipif(not FASHION_GZ.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_config_reads_the_debian_files(tmp_path, compose_cfg):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in FASHION_GZ.glob("*-ubyte.gz"):
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    dm = instantiate(compose_cfg("data=fashion_mnist", f"data.root={tmp_path}", "data.download=false").data)
    dm.setup()
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (55_000, 5_000, 10_000)
    assert dm.data_train.tensors[0].max().item() == 1.0


def test_index_batches_are_a_seeded_permutation_cut_into_mini_batches_and_stacked():
    sampler = IndexBatches(size=1050, batch_size=100, shuffle=True, batches_per_step=4, seed=3)
    sampler.set_epoch(2)
    items = list(sampler)
    reference = torch.randperm(1050, generator=torch.Generator().manual_seed(5)).split(100)
    assert [tuple(i.shape) for i in items] == [(4, 100), (4, 100), (2, 100), (1, 50)] and len(sampler) == 4
    assert torch.equal(torch.cat([row for item in items for row in item]), torch.cat(reference))
    sampler.set_epoch(3)
    assert not torch.equal(next(iter(sampler)), items[0])


def test_tensor_batches_yield_exactly_the_reference_indexing_of_the_dataset():
    x, y = torch.rand(230, 1, 28, 28), torch.randint(0, 10, (230,))
    data = TensorDataset(x, y)
    for k in (1, 3):
        sampler = IndexBatches(230, batch_size=20, shuffle=True, batches_per_step=k, seed=11)
        order = torch.randperm(230, generator=torch.Generator().manual_seed(11))
        got = list(TensorBatches(data, sampler))
        xs = torch.cat([bx.reshape(-1, 1, 28, 28) for bx, _ in got])
        ys = torch.cat([by.reshape(-1) for _, by in got])
        assert torch.equal(xs, x[order]) and torch.equal(ys, y[order])
        assert got[0][0].shape == ((20, 1, 28, 28) if k == 1 else (3, 20, 1, 28, 28))
    eval_batches = list(TensorBatches(data, IndexBatches(230, batch_size=100, shuffle=False)))
    assert [len(b) for b, _ in eval_batches] == [100, 100, 30] and torch.equal(eval_batches[2][1], y[200:])
