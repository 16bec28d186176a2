"""What the experiment loggers get when a run ends: its hyperparameters next to its results, so
that a sweep's runs can be compared in TensorBoard's HPARAMS tab, a CSV file, MLflow or W&B."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from mnist_lab.training.wandb_logger import WandbLogger

RESULTS = ("val/acc_best", "test/acc")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a/b": 1}`; values that are not numbers, strings or booleans as text."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return flat


def log_results(loggers: list[Logger], cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """Give every logger the run's flattened config with its final `val/acc_best` and `test/acc`."""
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    results = {k: float(metrics[k]) for k in RESULTS if k in metrics}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            # The scalars are logged already (and the logger closed): write the HPARAMS summary
            # alone, beside them, pointing at them.
            with SummaryWriter(logger.log_dir) as writer:
                for summary in hparams(params, results):
                    writer.file_writer.add_summary(summary)
        elif isinstance(logger, WandbLogger):  # W&B has the config already, nested as composed
            logger.log_metrics(results, step=metrics.get("global_step", 0))
            logger.finish()  # its summary written now; the next job of a sweep gets a run of its own
        else:
            logger.log_hyperparams(params)
            logger.log_metrics(results, step=metrics.get("global_step", 0))
            logger.save()
