"""How a fit is launched and how it ended, apart from the main path in train.py: the DDP launches
refused before they could hang or fail, why a fit ended, and what ddp_spawn's processes did not send back."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

from mnist_lab.checkpoints.paths import LAST
from mnist_lab.errors import ConfigError, UserError
from mnist_lab.training.callbacks import EpochTimer


def reruns_command_line(trainer: L.Trainer, strategy: object) -> bool:
    """Whether Lightning starts the other processes by rerunning the command line: DDP's default
    "popen" start on several devices, when no cluster (SLURM, torchrun) has started them."""
    if not isinstance(trainer.strategy, DDPStrategy) or trainer.num_devices * trainer.num_nodes < 2:
        return False
    if trainer.strategy.cluster_environment.creates_processes_externally:
        return False
    start_method = (
        StrategyRegistry[strategy]["init_params"].get("start_method", "popen")
        if isinstance(strategy, str) and strategy in StrategyRegistry
        else "popen"
    )
    return start_method == "popen"


def check_launch(trainer: L.Trainer, strategy: object) -> None:
    """Refuse DDP that reruns the command line when that command line is a multirun."""
    if (
        reruns_command_line(trainer, strategy)
        and HydraConfig.initialized()
        and (HydraConfig.get().mode == RunMode.MULTIRUN)
    ):
        raise ConfigError(
            "trainer.strategy=ddp cannot run inside a multirun: Lightning starts the other processes by "
            "rerunning the command line, which would rerun the whole sweep; in a sweep use "
            "trainer.strategy=ddp_spawn, or hydra/launcher=slurm with one SLURM task per device"
        )


def stop_reason(trainer: L.Trainer, epochs: int) -> str:
    """Why fit ended: the training-accuracy threshold, the step budget, or the epoch budget."""
    for callback in trainer.early_stopping_callbacks:
        if callback.stopping_reason == EarlyStoppingReason.STOPPING_THRESHOLD:
            return "accuracy_threshold"
    if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        return "max_steps"
    if epochs < (trainer.max_epochs or 0) and spawned_threshold_reached(trainer):
        return "accuracy_threshold"
    return "max_epochs"


def spawned_threshold_reached(trainer: L.Trainer) -> bool:
    """ddp_spawn's processes keep EarlyStopping's reason to themselves, but its metric comes back."""
    for callback in trainer.early_stopping_callbacks:
        value = trainer.callback_metrics.get(callback.monitor)
        if (
            value is not None
            and callback.stopping_threshold is not None
            and callback.monitor_op(value, torch.tensor(callback.stopping_threshold))
        ):
            return True
    return False


def recover_spawned_state(trainer: L.Trainer) -> int:
    """Epochs run. When other processes trained (ddp_spawn sends back only the metrics), this
    process saw no epoch: restore the callbacks' states (epoch times) from their last checkpoint."""
    checkpoint = trainer.checkpoint_callback
    last = Path(checkpoint.dirpath or "") / LAST if checkpoint is not None else None
    if trainer.current_epoch > 0 or trainer.global_step > 0 or last is None or not last.is_file():
        return trainer.current_epoch
    state = torch.load(last, map_location="cpu", weights_only=True)
    for callback in trainer.callbacks:
        if isinstance(callback, EpochTimer) and callback.state_key in state.get("callbacks", {}):
            callback.load_state_dict(state["callbacks"][callback.state_key])
    return state["epoch"] + 1


def check_nodes(trainer: L.Trainer) -> None:
    """Refuse, before any rank waits for the others, a run over several nodes that cannot form: SLURM
    gave the job another number of nodes than trainer.num_nodes, or (on CPUs, with gloo) this node's
    name resolves to a loopback address, which gloo would tell the other nodes to reach it at."""
    if trainer.num_nodes < 2 or not isinstance(trainer.strategy, DDPStrategy):
        return
    nodes = int(os.environ.get("SLURM_NNODES", "1"))
    if isinstance(trainer.strategy.cluster_environment, SLURMEnvironment) and nodes != trainer.num_nodes:
        raise UserError(
            f"trainer.num_nodes={trainer.num_nodes}, but SLURM gave this job {nodes} node(s) "
            f"({os.environ.get('SLURM_JOB_NODELIST') or os.environ.get('SLURM_NODELIST')}); let hydra.launcher.nodes "
            f"follow trainer.num_nodes (its default), or train with trainer.num_nodes={nodes}"
        )
    if trainer.strategy.root_device.type != "cpu" or os.environ.get("GLOO_SOCKET_IFNAME"):
        return  # NCCL finds its network interfaces itself
    host = socket.gethostname()
    try:
        address = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
    except OSError as err:
        raise UserError(f"this node's name {host} does not resolve ({err}); add it to /etc/hosts") from err
    if ipaddress.ip_address(address).is_loopback:
        raise UserError(
            f"node {host} (rank {trainer.global_rank}) resolves its own name to {address}, a loopback address, "
            "where the other nodes cannot reach it; map the name to this node's network address in /etc/hosts, "
            "or name the interface that reaches the other nodes with GLOO_SOCKET_IFNAME=<interface>"
        )
