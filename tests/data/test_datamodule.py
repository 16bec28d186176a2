"""MNISTDataModule: where the data comes from, the tutorial's split, in-memory batches."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import TensorDataset
from torchvision.datasets import FashionMNIST

from mnist_lab.data import files
from mnist_lab.data.datamodule import IndexBatches, MNISTDataModule, TensorBatches
from mnist_lab.data.files import PACKAGED
from mnist_lab.errors import DataNotFoundError

from helpers import QUIET, recorded_fit, run_cli

FASHION_GZ = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
NO_DATA_DIR = {"MNIST_LAB_DATA_DIR": ""}  # what a fresh machine has


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped idx file (images or labels) with gzip and numpy alone."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


@pytest.fixture(scope="module")
def mnist() -> MNISTDataModule:
    dm = MNISTDataModule(download=False)
    dm.setup()
    return dm


def test_split_is_55000_train_5000_validation_10000_official_test(mnist):
    assert (len(mnist.data_train), len(mnist.data_val), len(mnist.data_test)) == (55_000, 5_000, 10_000)


def test_validation_is_the_first_5000_training_images_and_test_the_official_set(mnist):
    raw = PACKAGED / "MNIST"
    train_images = read_idx(raw / "train-images-idx3-ubyte.gz")
    train_labels = read_idx(raw / "train-labels-idx1-ubyte.gz")
    val_x, val_y = mnist.data_val.tensors
    train_x, train_y = mnist.data_train.tensors
    test_x, test_y = mnist.data_test.tensors
    assert torch.equal(val_x[:, 0], torch.from_numpy(train_images[:5000]).float() / 255)
    assert torch.equal(val_y, torch.from_numpy(train_labels[:5000]).long())
    assert torch.equal(train_x[0, 0], torch.from_numpy(train_images[5000]).float() / 255)
    assert torch.equal(train_y, torch.from_numpy(train_labels[5000:]).long())
    assert torch.equal(test_y, torch.from_numpy(read_idx(raw / "t10k-labels-idx1-ubyte.gz")).long())


def test_pixels_are_float32_in_0_1_shaped_n_1_28_28_with_int64_labels(mnist):
    for x, y in (mnist.data_train.tensors, mnist.data_val.tensors, mnist.data_test.tensors):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert x.min().item() == 0.0 and x.max().item() == 1.0
        assert y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))


def test_evaluation_batches_keep_dataset_order_and_drop_nothing(mnist):
    xs, ys = zip(*mnist.test_dataloader())
    assert torch.equal(torch.cat(ys), mnist.data_test.tensors[1])
    assert sum(len(x) for x in xs) == 10_000


def test_normalize_flag_measures_the_training_split_and_leaves_the_pixels_in_0_1():
    dm = MNISTDataModule(download=False, normalize=True)
    dm.setup()
    train_x = dm.data_train.tensors[0]
    assert dm.mean == pytest.approx(train_x.mean().item()) and dm.std == pytest.approx(train_x.std().item())
    assert train_x.min().item() == 0.0 and train_x.max().item() == 1.0  # the model scales its own inputs


def test_a_fresh_machine_trains_from_the_packaged_copy_offline(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli(
        "model=softmax",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=200",
        *QUIET,
        f"data.root={empty}",
        "data.download=false",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        env=NO_DATA_DIR,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"MNIST: reading the copy packaged with mnist_lab ({PACKAGED / 'MNIST'})" in result.stdout
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test/acc"] > 0.8  # it learned
    assert list(empty.iterdir()) == []  # nothing is written into a data folder


def test_a_data_folder_that_holds_a_copy_is_read_before_the_packaged_one(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in PACKAGED.glob("MNIST/*.gz"):  # the uncompressed originals, torchvision's layout
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    dm = MNISTDataModule(root=tmp_path, download=False)
    dm.setup()
    assert len(dm.data_test) == 10_000


@pytest.mark.parametrize("damage", ["truncated gz", "gz of other bytes"])
def test_a_damaged_packaged_copy_is_one_error_line_naming_the_file(tmp_path, monkeypatch, damage):
    copy = tmp_path / "packaged"  # an installed mnist_lab whose packaged copy was damaged
    shutil.copytree(PACKAGED, copy)
    monkeypatch.setattr(files, "PACKAGED", copy)
    bad = copy / "MNIST" / "t10k-labels-idx1-ubyte.gz"
    good = bad.read_bytes()
    other = bytearray(gzip.decompress(good))
    other[-1] = (other[-1] + 1) % 10  # one label changed: a well-formed file with other contents
    bad.write_bytes(good[: len(good) // 2] if damage == "truncated gz" else gzip.compress(bytes(other)))
    result = run_cli("model=softmax", *QUIET, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=NO_DATA_DIR)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "Traceback" not in output, output[-2000:]
    assert str(bad) in errors[0] and "reinstall mnist_lab" in errors[0]
    assert ("not a complete gzip file" if damage == "truncated gz" else "md5 differs") in errors[0]


def test_missing_data_without_download_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        MNISTDataModule(dataset="FashionMNIST", root=tmp_path, download=False).prepare_data()
    message = str(err.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message and "data.root=" in message
    assert "data.download=true" in message


def test_missing_data_that_cannot_be_downloaded_says_so_and_leaves_no_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens on the discard port
    with pytest.raises(DataNotFoundError, match="could not be downloaded.*data.root="):
        MNISTDataModule(dataset="FashionMNIST", root=tmp_path, download=True).prepare_data()
    assert list(tmp_path.iterdir()) == []


def test_missing_data_on_the_command_line_is_one_error_line_and_exit_code_1(tmp_path):
    result = run_cli(
        "data=fashion_mnist",
        f"data.root={tmp_path / 'nowhere'}",
        "data.download=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() + result.stdout.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "nowhere/FashionMNIST/raw" in errors[0] and "data.root=" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_dataset_comes_from_config(compose_cfg):
    dm = instantiate(compose_cfg("data=fashion_mnist").data)
    assert dm.dataset_name == "FashionMNIST" and dm.batch_size == 100 and dm.val_size == 5000


@pytest.mark.skipif(
    not (FASHION_GZ / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason=f"no Fashion-MNIST in {FASHION_GZ} (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_reads_a_folder_of_debian_style_gz_files(tmp_path, compose_cfg):
    for gz in FASHION_GZ.glob("*-ubyte.gz"):  # recompressed gz files, flat, as Debian ships them
        shutil.copy(gz, tmp_path / gz.name)
    dm = instantiate(compose_cfg("data=fashion_mnist", f"data.root={tmp_path}", "data.download=false").data)
    dm.setup()
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (55_000, 5_000, 10_000)
    assert torch.equal(
        dm.data_test.tensors[1], torch.from_numpy(read_idx(FASHION_GZ / "t10k-labels-idx1-ubyte.gz")).long()
    )


def test_index_batches_are_a_seeded_permutation_per_epoch_cut_into_mini_batches():
    sampler = IndexBatches(size=1050, batch_size=100, shuffle=True, seed=3)
    sampler.set_epoch(2)
    items = list(sampler)
    reference = torch.randperm(1050, generator=torch.Generator().manual_seed(5)).split(100)
    assert [len(i) for i in items] == [100] * 10 + [50] and len(sampler) == 11
    assert all(torch.equal(a, b) for a, b in zip(items, reference))
    sampler.set_epoch(3)
    assert not torch.equal(next(iter(sampler)), items[0])


def test_tensor_batches_yield_exactly_the_reference_indexing_of_the_dataset():
    x, y = torch.rand(230, 1, 28, 28), torch.randint(0, 10, (230,))
    data = TensorDataset(x, y)
    sampler = IndexBatches(230, batch_size=20, shuffle=True, seed=11)
    order = torch.randperm(230, generator=torch.Generator().manual_seed(11))
    got = list(TensorBatches(data, sampler))
    assert torch.equal(torch.cat([bx for bx, _ in got]), x[order]) and torch.equal(
        torch.cat([by for _, by in got]), y[order]
    )
    assert got[0][0].shape == (20, 1, 28, 28)
    eval_batches = list(TensorBatches(data, IndexBatches(230, batch_size=100, shuffle=False)))
    assert [len(b) for b, _ in eval_batches] == [100, 100, 30] and torch.equal(eval_batches[2][1], y[200:])


def test_every_epoch_trains_on_a_new_order_and_one_seed_repeats_it(tmp_path):
    args = ["trainer.max_epochs=3", "trainer.limit_train_batches=2", "seed=5"]
    first, _ = recorded_fit(tmp_path, *args, name="a")
    again, _ = recorded_fit(tmp_path, *args, name="b")
    epochs = first["first_labels"]
    assert len(epochs) == 3 and epochs[0] != epochs[1] != epochs[2] != epochs[0]
    assert again["first_labels"] == epochs  # epoch N's order is the same for the same seed
