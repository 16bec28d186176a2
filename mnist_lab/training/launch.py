"""Before a fit over several processes: the DDP launches refused before they could hang or fail, and
where each process trains. training.processes.fit_across runs them; a one-process fit never does."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

from mnist_lab.errors import ConfigError, UserError

log = logging.getLogger(__name__)


def reruns_command_line(trainer: L.Trainer, strategy: object) -> bool:
    """Whether Lightning starts the other processes by rerunning the command line: DDP's default
    "popen" start on several devices, when no cluster (SLURM, torchrun) has started them."""
    if not isinstance(trainer.strategy, DDPStrategy) or trainer.num_devices * trainer.num_nodes < 2:
        return False
    if trainer.strategy.cluster_environment.creates_processes_externally:
        return False
    if isinstance(strategy, str):  # a registered name such as ddp or ddp_spawn
        settings = StrategyRegistry[strategy]["init_params"] if strategy in StrategyRegistry else {}
    else:  # the strategy's own config (conf/trainer/ddp.yaml)
        settings = strategy or {}
    return settings.get("start_method", "popen") == "popen"


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


def own_address() -> tuple[str, str]:
    """This node's name and the address it resolves to (what gloo tells the other ranks); OSError if none."""
    host = socket.gethostname()
    return host, socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]


def log_rank(trainer: L.Trainer) -> None:
    """Log where this process trains when several do: its rank, its node's name and address."""
    if trainer.world_size < 2:
        return
    try:
        host, address = own_address()
    except OSError:
        host, address = socket.gethostname(), "unresolved"
    log.info("rank %d of %d on node %s (%s)", trainer.global_rank, trainer.world_size, host, address)


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
    try:
        host, address = own_address()
    except OSError as err:
        host = socket.gethostname()
        raise UserError(f"this node's name {host} does not resolve ({err}); add it to /etc/hosts") from err
    if ipaddress.ip_address(address).is_loopback:
        raise UserError(
            f"node {host} (rank {trainer.global_rank}) resolves its own name to {address}, a loopback address, "
            "where the other nodes cannot reach it; map the name to this node's network address in /etc/hosts, "
            "or name the interface that reaches the other nodes with GLOO_SOCKET_IFNAME=<interface>"
        )
