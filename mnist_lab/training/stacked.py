"""Stacked steps, an opt-in speed path (`steps=stacked`): several mini-batches per Lightning step.

Lightning spends about 0.3 ms of Python on every training step; for the small MNIST networks that is as
long as the step itself. `StackedClassifier` takes Lightning's `dataloader_iter` (Lightning's public way
for a module to fetch its own batches) and makes `stack` optimizer steps per Lightning step, one per
mini-batch, through manual optimization (`manual_backward`, `LightningOptimizer.step`). So `global_step`,
the backward and optimizer-step hooks of every callback, the precision plugin and the learning-rate
schedules still see every mini-batch, and the progress bar counts mini-batches. It draws the same
mini-batches in the same order and computes the same steps as `Classifier` on Lightning's ordinary loop.

What counts Lightning steps rather than mini-batches (validation every N batches, gradient accumulation,
a callback acting on each training batch, several processes) cannot run on it: the fit stops before it
starts, with one line naming the setting. A callback of the user's whose per-batch hooks work as well
once per Lightning step says so with a class attribute `stack_safe = True`. Everything stacked steps
need lives in this module.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import Strategy
from torch import Tensor

from mnist_lab.errors import ConfigError
from mnist_lab.models.classifier import Classifier
from mnist_lab.training.callbacks import GracefulInterrupt

log = logging.getLogger(__name__)

# Callback hooks that run once per Lightning step, and so would see a stack rather than a mini-batch.
PER_BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_zero_grad")
# mnist_lab's callbacks whose per-batch hooks work as well once per stack (GracefulInterrupt stops after it).
STACK_SAFE = (ProgressBar, GracefulInterrupt)
# The callback and module hooks `manual_backward` runs around `loss.backward()` (the strategy and the
# precision plugin add their own steps: see backward_hooks).
BACKWARD_HOOKS = ("on_before_backward", "on_after_backward")


def overrides(obj: object, base: type, *names: str) -> bool:
    """Whether the class of `obj` replaces any of the methods `names` of `base`."""
    return any(getattr(type(obj), name) is not getattr(base, name) for name in names)


def counts_batches(callback: Callback) -> bool:
    """Whether a callback acts on individual training batches, which stacked steps would hide from it."""
    if isinstance(callback, STACK_SAFE) or getattr(callback, "stack_safe", False):
        return False  # a callback of the user's may declare that once per Lightning step is as good
    if isinstance(callback, ModelCheckpoint):
        # Its triggers are exclusive: saving every N epochs (public) means no step or time trigger.
        return not callback.every_n_epochs
    return overrides(callback, Callback, *PER_BATCH_HOOKS)


def unstackable(trainer: L.Trainer) -> list[str]:
    """What in this fit counts Lightning steps or training batches (empty: stacking changes nothing)."""
    checks = {
        "trainer.val_check_interval": trainer.val_check_interval != 1.0,
        "trainer.accumulate_grad_batches": trainer.accumulate_grad_batches != 1,
        "trainer.gradient_clip_val": bool(trainer.gradient_clip_val),
        "several processes": trainer.world_size > 1,
        "a plateau or every-N-steps learning-rate schedule": any(
            config.reduce_on_plateau or config.frequency != 1 for config in trainer.lr_scheduler_configs
        ),
    }
    reasons = [name for name, applies in checks.items() if applies]
    return reasons + [f"callback {type(c).__name__}" for c in trainer.callbacks if counts_batches(c)]


def backward_hooks(trainer: L.Trainer, module: L.LightningModule) -> list[str]:
    """What in this fit acts on a backward pass besides `loss.backward()` (empty: `manual_backward` would
    come down to `loss.backward()`, so stacked steps call it directly)."""
    precision = trainer.precision_plugin
    checks = {
        "the strategy": overrides(trainer.strategy, Strategy, "pre_backward", "backward", "post_backward"),
        # bf16-mixed's pre_backward scales the loss only with a gradient scaler (16-mixed has one)
        "the precision plugin": getattr(precision, "scaler", None) is not None
        or overrides(precision, Precision, "backward", "post_backward")
        or type(precision).pre_backward not in (Precision.pre_backward, MixedPrecision.pre_backward),
        "the module": overrides(module, L.LightningModule, "backward", *BACKWARD_HOOKS),
    }
    hooks = [name for name, applies in checks.items() if applies]
    return hooks + [
        f"callback {type(c).__name__}" for c in trainer.callbacks if overrides(c, Callback, *BACKWARD_HOOKS)
    ]


def share_step_count(checkpoint: dict[str, Any]) -> None:
    """Give both of Lightning's optimizer-step counters the steps a checkpoint made, so that `global_step`
    continues whichever loop (automatic or manual optimization) the resumed fit takes."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    automatic = loop.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {}).get("step")
    manual = loop.get("epoch_loop.manual_optimization.optim_step_progress")
    if automatic is None or manual is None:
        return
    done = max(automatic["total"]["completed"], manual["total"]["completed"])
    for progress in (automatic, manual):
        progress["total"] = {"ready": done, "completed": done}


class StackedClassifier(Classifier):
    """`Classifier` that makes `stack` optimizer steps, one per mini-batch, in each Lightning step."""

    def __init__(self, stack: int = 20, **classifier: Any) -> None:
        """`classifier`: Classifier's arguments (saved with `stack` as hyperparameters by Classifier)."""
        if stack < 1:
            raise ValueError(f"model.stack must be at least 1, got {stack}")
        super().__init__(**classifier)
        # `dataloader_iter` has been public since Lightning 2.0; its warnings still call it experimental.
        warnings.filterwarnings("ignore", message="Found `dataloader_iter` argument")
        warnings.filterwarnings("ignore", message="You are using the `dataloader_iter` step flavor")
        self.automatic_optimization = False
        self.plain_backward = False  # set at fit start: loss.backward() where nothing hooks backward
        self.identity_scaling = False  # set at train start: whether scale() is (x - 0) / 1
        self.batch_hooks: tuple[Any, Any, Any] = (self, self, self)  # set at fit start: see to_device

    def on_fit_start(self) -> None:
        super().on_fit_start()
        reasons = unstackable(self.trainer)
        if reasons:
            raise ConfigError(
                f"steps=stacked cannot train with {', '.join(reasons)}, which count Lightning steps or "
                f"training batches, and each step holds {self.hparams.stack} mini-batches; leave that out, "
                "or train with steps=plain"
            )
        hooks = backward_hooks(self.trainer, self)
        self.plain_backward = not hooks
        datamodule = self.trainer.datamodule
        self.batch_hooks = tuple(  # whose batch hooks Lightning would call: the data module's own, else ours
            datamodule if datamodule is not None and overrides(datamodule, L.LightningDataModule, name) else self
            for name in ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")
        )
        log.info(
            "training %d mini-batches per Lightning step (steps=stacked), %s",
            self.hparams.stack,
            f"backward through manual_backward for {', '.join(hooks)}" if hooks else "plain loss.backward()",
        )

    def on_train_start(self) -> None:
        super().on_train_start()
        self.identity_scaling = bool(self.input_mean == 0 and self.input_std == 1)

    def scale(self, x: Tensor) -> Tensor:
        """The model's input scaling, skipped in training where it is (x - 0) / 1: exact in IEEE floats,
        and as long as a softmax step."""
        return x if self.training and self.identity_scaling else super().scale(x)

    def training_step(self, dataloader_iter: Iterator[tuple[Any, int, int]]) -> None:
        """Up to `stack` mini-batches from Lightning's iterator, one optimizer step each."""
        trainer, optimizer = self.trainer, self.optimizers()
        losses = []
        for batch, batch_idx, _ in itertools.islice(dataloader_iter, self.hparams.stack):
            loss = self.step_loss(self.to_device(batch))
            optimizer.zero_grad()
            # manual_backward runs the backward hooks; where none acts, it comes down to loss.backward()
            loss.backward() if self.plain_backward else self.manual_backward(loss)
            optimizer.step()
            self.step_schedulers("step")
            if batch_idx + 1 == trainer.num_training_batches:
                self.step_schedulers("epoch")  # before the epoch's checkpoints, as Lightning does
            losses.append(loss.detach())
            if trainer.max_steps != -1 and self.global_step >= trainer.max_steps:
                break
        # Once per stack: each check waits for the device to finish. No checkpoint is saved in between.
        if losses:
            self.check_finite(torch.stack(losses))

    def to_device(self, batch: Any) -> Any:
        """What Lightning does to each batch it fetches itself: the precision's input type, then the data
        module's (where it has its own) or the module's batch hooks: on_before_batch_transfer,
        transfer_batch_to_device, on_after_batch_transfer (augmentation)."""
        before, move, after = self.batch_hooks
        batch = before.on_before_batch_transfer(self.trainer.precision_plugin.convert_input(batch), 0)
        return after.on_after_batch_transfer(move.transfer_batch_to_device(batch, self.device, 0), 0)

    def step_schedulers(self, interval: str) -> None:
        """Step the learning-rate schedules of `interval`: Lightning leaves that to a manual module."""
        for config in self.trainer.lr_scheduler_configs:
            if config.interval == interval:
                self.lr_scheduler_step(config.scheduler, None)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log_dict(self.x_axis())

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if not self.trainer.sanity_checking:
            self.log_dict(self.x_axis())

    def log(self, *args: Any, batch_size: int | None = None, **kwargs: Any) -> None:
        """Lightning's `log`. It asks a module that fetches its own batches for a batch size: the epoch
        metrics logged here are metric objects and single values, which it does not weigh."""
        super().log(*args, batch_size=batch_size or 1, **kwargs)

    def x_axis(self) -> dict[str, float]:
        """The step and epoch the loggers file epoch metrics under, as on Lightning's ordinary loop (the
        last mini-batch's index): Lightning's own count here is of Lightning steps, each several mini-batches."""
        return {"step": float(self.global_step - 1), "epoch": float(self.current_epoch)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        share_step_count(checkpoint)  # so that Classifier resumes it with its global_step

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        share_step_count(checkpoint)  # a Classifier's checkpoint counted its steps in the automatic loop
