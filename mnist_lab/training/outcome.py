"""How a fit is launched and how it ended, apart from the main path in train.py: the DDP launches
refused before they could hang or fail, why a fit ended, and what ddp_spawn's processes did not send back."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import subprocess
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
from mnist_lab.training.callbacks import EpochTimer, History

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
    process saw no epoch: restore the callbacks' states (epoch times, history) from their last checkpoint."""
    checkpoint = trainer.checkpoint_callback
    last = Path(checkpoint.dirpath or "") / LAST if checkpoint is not None else None
    if trainer.current_epoch > 0 or trainer.global_step > 0 or last is None or not last.is_file():
        return trainer.current_epoch
    state = torch.load(last, map_location="cpu", weights_only=True)
    for callback in trainer.callbacks:
        if isinstance(callback, (EpochTimer, History)) and callback.state_key in state.get("callbacks", {}):
            callback.load_state_dict(state["callbacks"][callback.state_key])
    return state["epoch"] + 1


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


def slurm_nodes() -> list[str]:
    """This SLURM job's node names, in rank order ([] outside SLURM)."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if not nodelist:
        return []
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return nodelist.split(",")
    return out.stdout.split() if out.returncode == 0 and out.stdout.strip() else nodelist.split(",")


def where(rank: int, trainer: L.Trainer, nodes: list[str]) -> str:
    """`rank 1 (node2)`: a rank, and on SLURM (`nodes`: slurm_nodes()) the node it was given."""
    node = rank // max(trainer.num_devices, 1)
    return f"rank {rank} ({nodes[node]})" if node < len(nodes) else f"rank {rank}"


def ddp_failure(trainer: L.Trainer, err: RuntimeError, output_dir: Path, timeout: float | None) -> UserError | None:
    """One line for a run over several processes that could not form or lost one of them: who is
    missing, and what to do (`timeout`: trainer.strategy.timeout.seconds). None for any other error."""
    import torch.distributed as dist

    if trainer.world_size < 2 or (not isinstance(err, dist.DistError) and "gloo" not in str(err)):
        return None
    text, world, nodes = str(err), trainer.world_size, slurm_nodes()
    address, port = os.environ.get("MASTER_ADDR", "?"), os.environ.get("MASTER_PORT", "?")
    waited = f"within trainer.strategy.timeout.seconds={timeout:g}" if timeout else "in time"
    joined = re.search(r"(\d+)/(\d+) clients joined", text)
    if joined:
        missing = ", ".join(where(rank, trainer, nodes) for rank in range(int(joined[1]), world))
        return UserError(
            f"{world - int(joined[1])} of {world} processes never joined {waited}: {missing}; "
            f"check that it started (its node's log) and reaches {address}:{port}, "
            "or wait longer with trainer.strategy.timeout.seconds=<s>"
        )
    if isinstance(err, dist.DistNetworkError) or "connect to" in text:
        return UserError(
            f"{where(trainer.global_rank, trainer, nodes)} could not reach rank 0 at {address}:{port} {waited}; "
            f"check that rank 0's node runs and that {address} resolves here to its network address"
        )
    peer = re.search(r"\[([0-9a-fA-F.:]+)\]:\d+", text)
    name = peer[1] if peer else "another rank"
    if peer:
        try:
            name = f"{socket.gethostbyaddr(peer[1])[0]} ({peer[1]})"
        except OSError:
            pass
    reason = re.sub(r"^\[[^\]]*\] ", "", text.splitlines()[0]).split(". ")[0]
    return UserError(
        f"{where(trainer.global_rank, trainer, nodes)} lost the process on {name} mid-training ({reason}): "
        "its rank died or its node was lost; the run keeps its last full epoch: "
        f"resume with python -m mnist_lab resume={output_dir} (a SLURM job that SLURM requeues resumes by itself)"
    )
