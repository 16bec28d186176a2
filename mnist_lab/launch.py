"""How a training run is launched and ended, apart from the main path in train.py: the command
line made ready (resume, typos, the run folder), the one DDP launch refused in a sweep, why a fit
ended, and what ddp_spawn's processes did not send back."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

from mnist_lab import slurm
from mnist_lab.callbacks import EpochTimer
from mnist_lab.checkpoints import LAST, check_run_files, newest_run, resume_point
from mnist_lab.cli import check_writable, config_dir
from mnist_lab.errors import ConfigError, UserError
from mnist_lab.overrides import check_overrides
from mnist_lab.run_dir import check_new_run_dir
from mnist_lab.trust import trust_from_argv


def prepare_command_line(argv: list[str]) -> list[str]:
    """The Hydra command line to run: `resume=` rewritten, typos and reused folders refused."""
    resuming = any(a.startswith("resume=") for a in argv[1:])
    argv = resume_argv(argv)
    check_overrides(config_dir(), "train", argv, "python -m mnist_lab")
    if not resuming:  # resume= is the one way back into a run's folder
        check_new_run_dir(argv, resumable=True)
    check_writable(argv)
    return argv


def resume_argv(argv: list[str]) -> list[str]:
    """Rewrite `resume=<run folder>` into Hydra arguments that rerun that folder's own config, in
    that folder, from its checkpoints/last.ckpt (start.ckpt if it stopped in its first epoch).
    Other arguments may change values (not config groups), e.g. trainer.max_epochs=40. The folder's
    config and checkpoint come from elsewhere: they may name only trusted code (`trust=[...]` adds)."""
    chosen = [a for a in argv[1:] if a.startswith("resume=")]
    if not chosen:
        return argv
    spec = chosen[-1].split("=", 1)[1]
    try:
        run = (newest_run(Path("outputs")) if spec == "latest" else Path(spec).expanduser()).resolve()
    except UserError as err:
        raise UserError(str(err).replace("ckpt_path=latest", "resume=latest")) from err
    if not (run / ".hydra" / "config.yaml").is_file():
        raise UserError(f"resume={run}: not a mnist_lab run folder (no .hydra/config.yaml); give the folder of a run")
    last = resume_point(run)
    if last is None:
        raise UserError(f"resume={run}: no checkpoints/{LAST} to resume from; start a new run instead")
    rest = [a for a in argv[1:] if not a.startswith("resume=")]
    check_run_files(run, last, trust_from_argv(argv))
    # ++: a run saved before `trust` was a config key has no such key to set.
    rest = [f"++{a.lstrip('+')}" if a.lstrip("+").startswith("trust=") else a for a in rest]
    return [
        argv[0],
        "--config-path",
        str(run / ".hydra"),
        "--config-name",
        "config",
        f"hydra.run.dir={run}",
        "hydra.output_subdir=null",
        "hydra.job.name=train",
        f"++ckpt_path={last}",
        *rest,
    ]


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


# On import: mnist_lab.train imports this module before Hydra composes any config.
slurm.register()
