"""Entry point: `python -m mnist_lab [overrides]` fits one model, tests it, writes metrics.json."""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, ProgressBar
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from omegaconf import DictConfig, OmegaConf

from mnist_lab.callbacks import EpochTimer
from mnist_lab.classifier import Classifier
from mnist_lab.cli import config_dir, entry_point
from mnist_lab.io import write_json_atomic

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every non-null entry of a config group such as `callbacks` or `logger`."""
    return [instantiate(node) for node in (group or {}).values() if node is not None]


def stop_reason(trainer: L.Trainer) -> str:
    """Why fit ended: the training-accuracy threshold, or the epoch budget."""
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopping_reason == EarlyStoppingReason.STOPPING_THRESHOLD:
            return "accuracy_threshold"
    return "max_epochs"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the configured model, test its best checkpoint, and write `metrics.json` in the run folder."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    # Plain containers, so that checkpoints load with torch.load(weights_only=True).
    model = Classifier(**OmegaConf.to_container(cfg.module, resolve=True))
    loggers = instantiate_all(cfg.get("logger"))
    callbacks = instantiate_all(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    train_seconds = time.perf_counter() - start
    epochs_run = trainer.current_epoch

    timers = [c for c in trainer.callbacks if isinstance(c, EpochTimer)]
    epoch_seconds = [round(s, 3) for s in timers[0].seconds] if timers else []
    checkpoint = trainer.checkpoint_callback
    best_ckpt = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    metrics: dict[str, Any] = {
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "epochs_run": epochs_run,
        "stop_reason": stop_reason(trainer),
        "train_seconds": round(train_seconds, 3),
        "epoch_seconds": epoch_seconds,  # training only, validation excluded
        "seconds_per_epoch": round(statistics.median(epoch_seconds), 3) if epoch_seconds else None,
        "best_ckpt": best_ckpt,
        **{k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "val/"))},
    }
    if cfg.get("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=best_ckpt, verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    write_json_atomic(output_dir / "metrics.json", metrics)
    log.info("metrics: %s", {k: metrics[k] for k in ("epochs_run", "stop_reason", "val/acc_best", "test/acc") if k in metrics})
    log.info("run folder: %s", output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
@entry_point
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns val/acc_best so that sweepers can optimise it."""
    return train(cfg).get("val/acc_best")
