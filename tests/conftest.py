"""Shared fixtures (real runs on the MNIST copy packaged with mnist_lab, composed configs) and the
suite's hooks; the helpers the tests import are in tests/helpers.py."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig

from helpers import Child, compose_train, shared_run


@pytest.fixture(scope="session", autouse=True)
def one_data_load() -> Iterator[None]:
    """Each idx file is read and checked once per session (keyed by its path, size and time), not
    once per run: the data's handling is tested in tests/data/, not again by every run."""
    from mnist_lab.data import files

    read_idx, cache = files.read_idx, {}

    def cached(path: Path, fix: str) -> tuple[Any, str]:
        stat = Path(path).stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in cache:
            cache[key] = read_idx(path, fix)
        return cache[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files, "read_idx", cached)
        yield


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One epoch of the default model (sigmoid MLP, Adam) on the full training split."""
    return shared_run(tmp_path_factory, "mlp_run", "model=mlp", "trainer.max_epochs=1")


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A short real CNN fit (10,000 images): checkpoints for predict, evaluate and export."""
    return shared_run(
        tmp_path_factory,
        "cnn_run",
        "model=cnn",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=100",
        "trainer.limit_val_batches=1",
    )


@pytest.fixture
def children() -> Iterator[Callable[..., Child]]:
    """Start `Child` processes; whatever happens in the test, none outlives it."""
    started: list[Child] = []

    def start(*args: str, **kwargs) -> Child:
        child = Child(list(args), **kwargs)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the train config with overrides, writing into this test's tmp_path."""
    return lambda *overrides: compose_train(tmp_path, *overrides)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files marked `long` (`pytestmark = pytest.mark.long`: a default run of a minute or more) first:
    pytest-xdist hands out whole files in collection order, so the workers end at about the same time
    instead of one waiting for the other. The rest keep their order."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_configure(config: pytest.Config) -> None:
    """What every entry point does first: the configs' resolvers and the SLURM launcher, known to Hydra.
    Under pytest-xdist, each worker trains on one thread, and so does every process it starts (commands,
    DDP ranks, SLURM jobs, which inherit the variable): two workers share the machine's cores, and more
    threads than cores only spin."""
    from mnist_lab.registry import register

    register()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def test_set() -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's official 10,000 test images (N, 1, 28, 28) in [0, 1] and their labels."""
    from mnist_lab.data.datamodule import MNISTDataModule

    dm = MNISTDataModule(download=False)
    dm.setup()
    return dm.data_test.tensors
