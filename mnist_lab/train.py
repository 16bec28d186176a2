"""Entry point: `python -m mnist_lab [overrides]` fits one model, tests it, writes metrics.json."""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from mnist_lab.atomic import write_json_atomic
from mnist_lab.callbacks import EpochTimer
from mnist_lab.classifier import Classifier
from mnist_lab.cli import config_dir, entry_point
from mnist_lab.config_checks import check_config
from mnist_lab.errors import Interrupted, NonFiniteLossError, UserError
from mnist_lab.hardware import skip_nvml_where_missing
from mnist_lab.launch import check_launch, prepare_command_line, recover_spawned_state, stop_reason
from mnist_lab.tracking import log_results

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every non-null entry of a config group such as `callbacks` or `logger`."""
    return [instantiate(node) for node in (group or {}).values() if node is not None]


def run_metrics(trainer: L.Trainer, cfg: DictConfig, train_seconds: float, epochs: int, reason: str) -> dict[str, Any]:
    """What metrics.json records about a fit, however it ended."""
    timers = [c for c in trainer.callbacks if isinstance(c, EpochTimer)]
    epoch_seconds = [round(s, 3) for s in timers[0].seconds] if timers else []
    checkpoint = trainer.checkpoint_callback
    return {
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "epochs_run": epochs,
        "stop_reason": reason,
        "train_seconds": round(train_seconds, 3),
        "epoch_seconds": epoch_seconds,  # training only, validation excluded
        "seconds_per_epoch": round(statistics.median(epoch_seconds), 3) if epoch_seconds else None,
        "best_ckpt": (checkpoint.best_model_path or None) if checkpoint is not None else None,
        **{k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "val/"))},
    }


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the configured model, test its best checkpoint, and write `metrics.json` in the run folder."""
    check_config(cfg)
    skip_nvml_where_missing()
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    # Plain containers, so that checkpoints load with torch.load(weights_only=True).
    model = Classifier(**OmegaConf.to_container(cfg.classifier, resolve=True))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # runs stay on this machine
    loggers = instantiate_all(cfg.get("logger"))
    callbacks = instantiate_all(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    check_launch(trainer, cfg.trainer.get("strategy", "auto"))
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except (Interrupted, NonFiniteLossError) as stop:
        reason = "interrupted" if isinstance(stop, Interrupted) else "non_finite_loss"
        metrics = run_metrics(trainer, cfg, time.perf_counter() - start, trainer.current_epoch, reason)
        metrics["resume"] = f"python -m mnist_lab resume={output_dir}"
        if trainer.is_global_zero:
            write_json_atomic(output_dir / "metrics.json", metrics)
        raise
    seconds, epochs = time.perf_counter() - start, recover_spawned_state(trainer)
    metrics = run_metrics(trainer, cfg, seconds, epochs, stop_reason(trainer, epochs))
    if cfg.get("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=metrics["best_ckpt"], verbose=False, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    if trainer.is_global_zero:  # one metrics.json per run, however many processes trained it
        write_json_atomic(output_dir / "metrics.json", metrics)
        log_results(loggers, cfg, {**metrics, "global_step": trainer.global_step})
    log.info(
        "metrics: %s",
        {k: metrics[k] for k in ("epochs_run", "stop_reason", "val/acc_best", "test/acc") if k in metrics},
    )
    log.info("run folder: %s", output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
@entry_point
def _main(cfg: DictConfig) -> float | None:
    return train(cfg).get("val/acc_best")


def main() -> float | None:
    """`python -m mnist_lab`: returns val/acc_best so that sweepers can optimise it."""
    try:
        sys.argv = prepare_command_line(sys.argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    return _main()
