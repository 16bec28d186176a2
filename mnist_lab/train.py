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
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, ProgressBar
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.strategies.launchers import (
    _MultiProcessingLauncher,
    _SubprocessScriptLauncher,
)
from omegaconf import DictConfig, OmegaConf

from mnist_lab.callbacks import EpochTimer, GracefulInterrupt
from mnist_lab.classifier import Classifier
from mnist_lab.cli import check_writable, config_dir, entry_point
from mnist_lab.errors import ConfigError, Interrupted, NonFiniteLossError, UserError
from mnist_lab.io import write_json_atomic

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every non-null entry of a config group such as `callbacks` or `logger`."""
    return [instantiate(node) for node in (group or {}).values() if node is not None]


def stop_reason(trainer: L.Trainer, epochs: int) -> str:
    """Why fit ended: the training-accuracy threshold, or the epoch budget."""
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopping_reason == EarlyStoppingReason.STOPPING_THRESHOLD:
            return "accuracy_threshold"
        # ddp_spawn's processes keep the callback's reason to themselves, but its metric comes back.
        value = trainer.callback_metrics.get(callback.monitor) if isinstance(callback, EarlyStopping) else None
        if value is not None and callback.stopping_threshold is not None and (
            callback.monitor_op(value, torch.tensor(callback.stopping_threshold))
        ) and (trainer.max_epochs is None or epochs < trainer.max_epochs):
            return "accuracy_threshold"
    return "max_epochs"


def check_config(cfg: DictConfig) -> None:
    """Refuse config values outside their range before anything is built or written."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    lr = cfg.optimizer.get("lr")
    need(isinstance(lr, (int, float)) and lr > 0, f"optimizer.lr must be a number > 0, got {lr!r}; e.g. optimizer.lr=0.001")
    for key in ("batch_size", "batches_per_step"):
        value = cfg.data.get(key)
        need(isinstance(value, int) and value >= 1, f"data.{key} must be an integer >= 1, got {value!r}")
    threads = cfg.get("threads")
    need(threads is None or (isinstance(threads, int) and threads >= 1),
         f"threads must be an integer >= 1 (torch CPU threads) or null, got {threads!r}")
    epochs = cfg.trainer.get("max_epochs")
    need(isinstance(epochs, int) and epochs >= 1, f"trainer.max_epochs must be an integer >= 1, got {epochs!r}")
    stop = (cfg.get("callbacks") or {}).get("accuracy_stop")
    if stop is not None:
        threshold = stop.get("stopping_threshold")
        need(isinstance(threshold, (int, float)) and 0 < threshold <= 1,
             f"callbacks.accuracy_stop.stopping_threshold must lie in (0, 1], got {threshold!r}; "
             "or switch the stop off with callbacks.accuracy_stop=null")
    devices, accelerator = cfg.trainer.get("devices"), cfg.trainer.get("accelerator")
    if isinstance(devices, int):
        gpus = torch.cuda.device_count()
        on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)
        have = gpus if on_gpu else os.cpu_count() or 1
        need(have > 0, f"trainer.accelerator={accelerator} but this machine has no GPU; use trainer.accelerator=auto")
        need(1 <= devices <= have, f"trainer.devices={devices} but this machine has {have} "
             f"{'GPUs' if on_gpu else 'CPU cores'}; use trainer.devices=1" + ("" if on_gpu else " (or up to its cores)"))


def check_launch(trainer: L.Trainer) -> None:
    """Refuse DDP that restarts the command line when that command line is a multirun."""
    reruns_command = isinstance(getattr(trainer.strategy, "launcher", None), _SubprocessScriptLauncher)
    if reruns_command and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            "trainer.strategy=ddp cannot run inside a multirun: Lightning starts the other processes by "
            "rerunning the command line, which would rerun the whole sweep; in a sweep use "
            "trainer.strategy=ddp_spawn, or hydra/launcher=slurm with one SLURM task per device"
        )


def recover_spawned_state(trainer: L.Trainer) -> int:
    """Epochs run; with ddp_spawn, whose processes send back only the metrics, also restore the
    epoch times from the last checkpoint they wrote."""
    spawned = isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)
    checkpoint = trainer.checkpoint_callback
    last = Path(checkpoint.dirpath or "") / "last.ckpt" if checkpoint is not None else None
    if not spawned or last is None or not last.is_file():
        return trainer.current_epoch
    state = torch.load(last, map_location="cpu", weights_only=True)
    for callback in trainer.callbacks:
        if isinstance(callback, EpochTimer) and callback.state_key in state.get("callbacks", {}):
            callback.load_state_dict(state["callbacks"][callback.state_key])
    return state["epoch"] + 1


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
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
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
    check_launch(trainer)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
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
        trainer.test(model, datamodule=datamodule, ckpt_path=metrics["best_ckpt"], verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    if trainer.is_global_zero:  # one metrics.json per run, however many processes trained it
        write_json_atomic(output_dir / "metrics.json", metrics)
    log.info("metrics: %s", {k: metrics[k] for k in ("epochs_run", "stop_reason", "val/acc_best", "test/acc") if k in metrics})
    log.info("run folder: %s", output_dir)
    return metrics


def resume_argv(argv: list[str]) -> list[str]:
    """Rewrite `resume=<run folder>` into Hydra arguments that rerun that folder's own config, in
    that folder, from its checkpoints/last.ckpt (start.ckpt if it stopped in its first epoch).
    Other arguments may change values (not config groups), e.g. trainer.max_epochs=40."""
    chosen = [a for a in argv[1:] if a.startswith("resume=")]
    if not chosen:
        return argv
    run = Path(chosen[-1].split("=", 1)[1]).expanduser().resolve()
    if not (run / ".hydra" / "config.yaml").is_file():
        raise UserError(f"resume={run}: not a mnist_lab run folder (no .hydra/config.yaml); give the folder of a run")
    last = run / "checkpoints" / "last.ckpt"
    if not last.is_file():
        last = run / "checkpoints" / GracefulInterrupt.START  # interrupted in its first epoch
    if not last.is_file():
        raise UserError(f"resume={run}: no checkpoints/last.ckpt to resume from; start a new run instead")
    rest = [a for a in argv[1:] if not a.startswith("resume=")]
    return [argv[0], "--config-path", str(run / ".hydra"), "--config-name", "config",
            f"hydra.run.dir={run}", "hydra.output_subdir=null", "hydra.job.name=train", f"++ckpt_path={last}", *rest]


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
@entry_point
def _main(cfg: DictConfig) -> float | None:
    return train(cfg).get("val/acc_best")


def main() -> float | None:
    """`python -m mnist_lab`: returns val/acc_best so that sweepers can optimise it."""
    try:
        sys.argv = resume_argv(sys.argv)
        check_writable(sys.argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    return _main()
