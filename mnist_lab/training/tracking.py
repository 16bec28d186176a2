"""What the experiment loggers get when a run ends: its results beside the hyperparameters they were
given when it started, so that a sweep's runs can be compared in TensorBoard's HPARAMS tab, a CSV
file, MLflow or W&B."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from mnist_lab.training.wandb_logger import WandbLogger

RESULTS = ("val/acc_best", "test/acc")


def log_results(loggers: list[Logger], cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """Give every logger the run's final `val/acc_best` and `test/acc`; TensorBoard's HPARAMS tab takes
    them together with the run's config."""
    results = {k: float(metrics[k]) for k in RESULTS if k in metrics}
    step = metrics.get("global_step", 0)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True), results, step=step)
            logger.finalize("success")  # the fit closed its writer already: close the one this opened
        elif isinstance(logger, WandbLogger):  # W&B has the config already, nested as composed
            logger.log_metrics(results, step=step)
            logger.finish()  # its summary written now; the next job of a sweep gets a run of its own
        else:
            logger.log_metrics(results, step=step)
            logger.save()
