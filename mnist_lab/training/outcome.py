"""How a fit ended, apart from the main path in train.py: why it stopped, what ddp_spawn's processes
did not send back, and a process of a DDP run that never joined or was lost, as one line."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

from mnist_lab.checkpoints.paths import LAST
from mnist_lab.errors import UserError
from mnist_lab.training.callbacks import EpochTimer, History


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
