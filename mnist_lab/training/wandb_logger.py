"""`logger=wandb`: Lightning's WandbLogger, offline unless asked otherwise, with the model graph and the
checkpoints recorded offline too, and one W&B run per job however many jobs a process runs."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from torch import nn


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger, offline by default: `offline=false` or W&B's own `WANDB_MODE` goes online.

    Lightning refuses `log_model` with its `offline=True`, although W&B's offline mode records the
    checkpoint artifacts for `wandb sync` to upload later: here offline is W&B's own `mode`, so that
    an offline run keeps them. `watch` (W&B's `watch` arguments, or None) records the model's graph
    and gradients when Lightning hands the logger the model.
    """

    def __init__(self, offline: bool = True, watch: dict[str, Any] | None = None, **kwargs: Any) -> None:
        mode = (os.environ.get("WANDB_MODE") or "offline") if offline else "online"
        if mode == "offline":
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")  # an offline run sends nothing anywhere
        super().__init__(offline=False, mode=kwargs.pop("mode", mode), **kwargs)
        self.watch_options = dict(watch) if watch else None
        self.watched: list[nn.Module] = []

    def log_graph(self, model: nn.Module, input_array: Any = None) -> None:
        """Lightning calls this as fit and test start: W&B's `watch` (once a model) records the graph on the
        first step. It watches the network: W&B's graph waits for every submodule's forward, and the metrics
        a LightningModule holds never run one."""
        net = getattr(model, "net", model)
        if self.watch_options is not None and net not in self.watched:
            self.watch(net, **self.watch_options)
            self.watched.append(net)

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        """Keep the best checkpoint (a monitored ModelCheckpoint's) for `log_model`; last.ckpt, which
        only resumes a run, would otherwise be logged as a "best" version too."""
        if checkpoint_callback.monitor is not None:
            super().after_save_checkpoint(checkpoint_callback)

    def finalize(self, status: str) -> None:
        """Log the checkpoints (Lightning's `log_model`); a failed or interrupted run ends its W&B run here,
        so that the next job of a sweep run in this process starts a run of its own."""
        super().finalize(status)
        if status != "success":
            self.finish(exit_code=1)

    def finish(self, exit_code: int = 0) -> None:
        """End the W&B run this process logs to (writing its summary), if one was started."""
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=exit_code)
