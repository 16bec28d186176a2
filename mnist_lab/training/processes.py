"""A fit over several processes (DDP, ddp_spawn, SLURM tasks, several nodes), in one place: what only
such a fit needs runs here, and train() comes here only when the trainer is set up for more than one."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from mnist_lab.training.launch import check_launch, check_nodes, log_rank
from mnist_lab.training.outcome import ddp_failure, recover_spawned_state


def fit_across(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule, cfg: DictConfig) -> int:
    """`trainer.fit` over several processes: refuse a launch that cannot form before any process waits,
    name a process that never joined or was lost in one line, and return the epochs run (ddp_spawn's
    processes send back only their metrics)."""
    check_launch(trainer, cfg.trainer.get("strategy", "auto"))
    check_nodes(trainer)
    log_rank(trainer)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except RuntimeError as err:
        timeout = OmegaConf.select(cfg, "trainer.strategy.timeout.seconds")
        failure = ddp_failure(trainer, err, Path(cfg.paths.output_dir), timeout)
        if failure is None:
            raise
        raise failure from err
    return recover_spawned_state(trainer)
