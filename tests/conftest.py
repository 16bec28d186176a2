"""Shared fixtures: composed configs, real runs on the MNIST copy packaged with mnist_lab."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mnist_lab.cli import config_dir
from mnist_lab.train import train

# Quiet, fast runs: no progress bar, no model summary.
QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def compose_train(output_dir: Path, *overrides: str) -> DictConfig:
    """The train config as `python -m mnist_lab` would compose it, writing into `output_dir`."""
    return compose_config("train", f"paths.output_dir={output_dir}", *QUIET, *overrides)


def compose_config(name: str, *overrides: str, return_hydra: bool = False) -> DictConfig:
    """One of the entry points' configs (train, predict, evaluate, export) with overrides."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(name, overrides=list(overrides), return_hydra_config=return_hydra)


def fit(output_dir: Path, *overrides: str) -> dict[str, Any]:
    """One real in-process training run; returns its metrics.json contents."""
    output_dir.mkdir(parents=True, exist_ok=True)
    return train(compose_train(output_dir, *overrides))


def run_cli(
    *args: str, module: str = "mnist_lab", cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m mnist_lab ...` (or another entry point) in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One epoch of the default model (sigmoid MLP, Adam) on the full training split."""
    run_dir = tmp_path_factory.mktemp("mlp_run")
    return run_dir, fit(run_dir, "model=mlp", "trainer.max_epochs=1")


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A short real CNN fit (20,000 images): checkpoints for predict, evaluate and export."""
    run_dir = tmp_path_factory.mktemp("outputs") / "cnn_run"
    return run_dir, fit(run_dir, "model=cnn", "trainer.max_epochs=1", "trainer.limit_train_batches=200")


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the train config with overrides, writing into this test's tmp_path."""
    return lambda *overrides: compose_train(tmp_path, *overrides)
