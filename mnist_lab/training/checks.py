"""Config values checked against their range before anything is built or written."""

from __future__ import annotations

import os

from omegaconf import DictConfig

from mnist_lab.errors import ConfigError


def need(ok: bool, message: str) -> None:
    """Raise ConfigError with `message` unless `ok`."""
    if not ok:
        raise ConfigError(message)


def check_config(cfg: DictConfig) -> None:
    """Refuse config values outside their range before anything is built or written."""
    lr = cfg.optimizer.get("lr")
    need(
        isinstance(lr, (int, float)) and lr > 0,
        f"optimizer.lr must be a number > 0, got {lr!r}; e.g. optimizer.lr=0.001",
    )
    batch_size = cfg.data.get("batch_size")
    need(
        isinstance(batch_size, int) and batch_size >= 1, f"data.batch_size must be an integer >= 1, got {batch_size!r}"
    )
    threads = cfg.get("threads")
    need(
        threads is None or (isinstance(threads, int) and threads >= 1),
        f"threads must be an integer >= 1 (torch CPU threads) or null, got {threads!r}",
    )
    epochs = cfg.trainer.get("max_epochs")
    need(isinstance(epochs, int) and epochs >= 1, f"trainer.max_epochs must be an integer >= 1, got {epochs!r}")
    stop = (cfg.get("callbacks") or {}).get("accuracy_stop")
    if stop is not None:
        threshold = stop.get("stopping_threshold")
        need(
            isinstance(threshold, (int, float)) and 0 < threshold <= 1,
            f"callbacks.accuracy_stop.stopping_threshold must lie in (0, 1], got {threshold!r}; "
            "or switch the stop off with callbacks.accuracy_stop=null",
        )


def check_devices(cfg: DictConfig) -> None:
    """Refuse more devices than the machine has (asks torch, so it runs once torch is loaded)."""
    import torch

    devices, accelerator = cfg.trainer.get("devices"), cfg.trainer.get("accelerator")
    if isinstance(devices, int):
        gpus = torch.cuda.device_count()
        on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)
        have = gpus if on_gpu else os.cpu_count() or 1
        need(have > 0, f"trainer.accelerator={accelerator} but this machine has no GPU; use trainer.accelerator=auto")
        need(
            1 <= devices <= have,
            f"trainer.devices={devices} but this machine has {have} "
            f"{'GPUs' if on_gpu else 'CPU cores'}; use trainer.devices=1" + ("" if on_gpu else " (or up to its cores)"),
        )
