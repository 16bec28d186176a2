"""`python -m mnist_lab [overrides]`: fit the configured LightningModule, test its best checkpoint,
write metrics.json in the run folder."""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_lab.cli.command import run_command
from mnist_lab.cli.resume import resume
from mnist_lab.training.checks import check_config

if TYPE_CHECKING:
    import lightning as L

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every non-null entry of a config group such as `callbacks` or `logger`."""
    return [instantiate(node) for node in (group or {}).values() if node is not None]


def run_metrics(trainer: L.Trainer, model: L.LightningModule, seconds: float, epochs: int, reason: str) -> dict:
    """What metrics.json records about a fit, however it ended."""
    from mnist_lab.training.callbacks import EpochMetrics, EpochTimer, History

    timers = [c for c in trainer.callbacks if isinstance(c, EpochTimer)]
    histories = [c for c in trainer.callbacks if isinstance(c, History)]
    # A fit resumed from its last epoch's checkpoint runs no epoch: the checkpoint's metrics are the run's.
    restored = next((c.restored for c in trainer.callbacks if isinstance(c, EpochMetrics)), {})
    epoch_seconds = [round(s, 3) for s in timers[0].seconds] if timers else []
    checkpoint = trainer.checkpoint_callback
    return {
        "model": type(getattr(model, "net", model)).__name__,
        "epochs_run": epochs,
        "stop_reason": reason,
        "train_seconds": round(seconds, 3),
        "epoch_seconds": epoch_seconds,  # training only, validation excluded
        "seconds_per_epoch": round(statistics.median(epoch_seconds), 3) if epoch_seconds else None,
        "best_ckpt": (checkpoint.best_model_path or None) if checkpoint is not None else None,
        **restored,
        **{k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "val/"))},
        "history": histories[0].rows if histories else [],  # per epoch: train/ and val/ loss and acc, seconds
    }


def fit(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule, cfg: DictConfig) -> int:
    """`trainer.fit`, continuing from `cfg.ckpt_path` if set; the epochs run. A fit over several processes
    goes through mnist_lab.training.processes, where what only it needs is done."""
    # The processes the trainer is set up for (on SLURM, world_size is what SLURM started, which may differ).
    if trainer.num_nodes * trainer.num_devices > 1:
        from mnist_lab.training.processes import fit_across

        return fit_across(trainer, model, datamodule, cfg)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    return trainer.current_epoch


@contextmanager
def resumable_when_disk_fills(output_dir: Path) -> Iterator[None]:
    """A full disk anywhere in the run (checkpoint, metrics.json, a logger's files) ends it with one
    line: which file, the space left, the checkpoints kept, and the command that resumes."""
    from mnist_lab.checkpoints.paths import resume_point
    from mnist_lab.disk import disk_full_error
    from mnist_lab.errors import UserError

    try:
        yield
    except Exception as err:
        full = disk_full_error(err, output_dir)
        if full is None:
            raise
        kept = sorted(p.name for p in (output_dir / "checkpoints").glob("*.ckpt"))
        if resume_point(output_dir) is None:
            raise UserError(
                f"{full}; no checkpoint was written yet: free some space, then start the run again"
            ) from err
        raise UserError(
            f"{full}; the checkpoints written before are intact ({', '.join(kept)}): free some space, "
            f"then resume with: python -m mnist_lab resume={output_dir}"
        ) from err


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the configured model, test its best checkpoint, and write `metrics.json` in the run folder."""
    check_config(cfg)
    # Imported here, not above: --help, --cfg and a config error answer without loading torch or Lightning.
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ProgressBar

    from mnist_lab.atomic import write_json_atomic
    from mnist_lab.cli.run_record import record_trainer
    from mnist_lab.errors import Interrupted, NonFiniteLossError
    from mnist_lab.training.checks import check_devices
    from mnist_lab.training.hardware import skip_nvml_where_missing
    from mnist_lab.training.outcome import stop_reason
    from mnist_lab.training.tracking import log_results

    check_devices(cfg)
    skip_nvml_where_missing()
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("tune"):
        from mnist_lab.training.tune import find_lr

        lr = find_lr(cfg, output_dir)
        if not cfg.tune.apply:
            return {"lr_find": lr}
        cfg.optimizer.lr = lr
        log.info("training with the suggested optimizer.lr=%g", lr)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    # Build
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    model: L.LightningModule = instantiate(cfg.model)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # runs stay on this machine
    loggers = instantiate_all(cfg.get("logger"))
    callbacks = instantiate_all(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    record_trainer(
        output_dir, str(trainer.precision), trainer.strategy.root_device.type, trainer.num_devices * trainer.num_nodes
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    # Fit
    start = time.perf_counter()
    try:
        epochs = fit(trainer, model, datamodule, cfg)
    except (Interrupted, NonFiniteLossError) as stop:
        reason = "interrupted" if isinstance(stop, Interrupted) else "non_finite_loss"
        metrics = run_metrics(trainer, model, time.perf_counter() - start, trainer.current_epoch, reason)
        metrics["resume"] = f"python -m mnist_lab resume={output_dir}"
        if trainer.is_global_zero:
            write_json_atomic(output_dir / "metrics.json", metrics)
        raise
    metrics = run_metrics(trainer, model, time.perf_counter() - start, epochs, stop_reason(trainer, epochs))

    # Test
    if cfg.get("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=metrics["best_ckpt"], verbose=False, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})

    # Record
    if trainer.is_global_zero:  # one metrics.json per run, however many processes trained it
        write_json_atomic(output_dir / "metrics.json", metrics)
        log_results(loggers, cfg, {**metrics, "global_step": trainer.global_step})
    log.info(
        "metrics: %s",
        {k: metrics[k] for k in ("epochs_run", "stop_reason", "val/acc_best", "test/acc") if k in metrics},
    )
    log.info("run folder: %s", output_dir)
    return metrics


def objective(cfg: DictConfig) -> float | None:
    """One training run, scored for a sweeper: its val/acc_best. It alone writes its run folder."""
    from mnist_lab.cli.run_lock import one_writer

    output_dir = Path(cfg.paths.output_dir)
    with one_writer(output_dir), resumable_when_disk_fills(output_dir):
        return train(cfg).get("val/acc_best")


def main() -> None:
    """`python -m mnist_lab [overrides]`."""
    run_command("train", objective, rewrite=resume)
