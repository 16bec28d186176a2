"""A fit over several processes (DDP, ddp_spawn, SLURM tasks, several nodes), in one place: what only
such a fit needs runs here, and train() comes here only when the trainer is set up for more than one."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import lightning as L
import torch
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
    trainer.callbacks.append(EndSpawnedProcessGroup())
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except RuntimeError as err:
        timeout = OmegaConf.select(cfg, "trainer.strategy.timeout.seconds")
        failure = ddp_failure(trainer, err, Path(cfg.paths.output_dir), timeout)
        if failure is None:
            raise
        raise failure from err
    return recover_spawned_state(trainer)


class EndSpawnedProcessGroup(L.Callback):
    """End a spawned process's process group as its fit or test ends (ddp_spawn spawns new processes for each)."""

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Lightning ends only NCCL groups at exit; a gloo group left to its destructor at exit can abort
        # the process ("terminate called without an active exception") and with it the whole run.
        if multiprocessing.parent_process() is not None and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
