"""Stacked steps: several mini-batches per Lightning training step, where nothing can tell the difference.

Lightning spends about 0.3 ms of Python on every training step; for the small MNIST networks that is as
long as the step itself. `StackedSteps` hands the module `size` mini-batches at once, and the module
makes one optimizer step per mini-batch through Lightning's manual optimization (`manual_backward`,
`LightningOptimizer.step`), so the backward and optimizer-step hooks of every callback, the precision
plugin and `global_step` still see each step. Where nothing acts on a backward pass (`backward_hooks`),
`manual_backward` would come down to `loss.backward()`, and the module calls that itself: two hook
dispatches to every callback fewer per step. It applies only where no flag, callback or setting counts
or observes the individual training batches; anywhere else training takes Lightning's ordinary path.
Both paths draw the same mini-batches in the same order and compute the same steps.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import Strategy

log = logging.getLogger(__name__)

# Callback hooks that run once per training batch and so would see stacks rather than mini-batches
# (manual optimization also never calls on_before_zero_grad).
PER_BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_zero_grad")


# The callback and module hooks `manual_backward` runs around `loss.backward()` (the strategy and the
# precision plugin add their own steps: see backward_hooks).
BACKWARD_HOOKS = ("on_before_backward", "on_after_backward")


def overrides(obj: object, base: type, *names: str) -> bool:
    """Whether the class of `obj` replaces any of the methods `names` of `base`."""
    return any(getattr(type(obj), name) is not getattr(base, name) for name in names)


def observes_batches(callback: Callback) -> bool:
    """Whether a callback acts on individual training batches (and so needs Lightning's ordinary path)."""
    if isinstance(callback, (ProgressBar, StackedSteps)) or getattr(callback, "stack_safe", False):
        return False  # the bar only displays progress; callbacks may declare themselves indifferent
    if isinstance(callback, ModelCheckpoint):
        # Its state key is the public record of its triggers: saving every N steps or T seconds needs each batch.
        return "'every_n_train_steps': 0" not in callback.state_key or "'train_time_interval': None" not in (
            callback.state_key
        )
    return overrides(callback, Callback, *PER_BATCH_HOOKS)


def single_step_reasons(
    trainer: L.Trainer, datamodule: L.LightningDataModule | None, module: L.LightningModule
) -> list[str]:
    """What in this fit needs one mini-batch per Lightning step (empty: stacking changes nothing)."""
    checks = {
        "trainer.max_steps": trainer.max_steps != -1,
        "trainer.limit_train_batches": trainer.limit_train_batches != 1.0,
        "trainer.val_check_interval": trainer.val_check_interval != 1.0,
        "trainer.accumulate_grad_batches": trainer.accumulate_grad_batches != 1,
        "trainer.gradient_clip_val": bool(trainer.gradient_clip_val),
        "trainer.overfit_batches": trainer.overfit_batches > 0,
        "trainer.fast_dev_run": bool(trainer.fast_dev_run),
        "trainer.profiler": not isinstance(trainer.profiler, PassThroughProfiler),
        "several processes": trainer.world_size > 1,
        "a learning-rate scheduler": bool(trainer.lr_scheduler_configs),
        "data.augment": getattr(datamodule, "augment", None) is not None,
        "a datamodule without steps_per_batch": not hasattr(datamodule, "steps_per_batch"),
        "a module whose training_step takes one mini-batch": not getattr(module, "takes_stacked_batches", False),
    }
    reasons = [name for name, applies in checks.items() if applies]
    reasons += [f"callback {type(c).__name__}" for c in trainer.callbacks if observes_batches(c)]
    return reasons


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


class StackedSteps(Callback):
    """Give the module `size` mini-batches per training step when `single_step_reasons` finds nothing
    that would notice; log which path the fit takes and why."""

    def __init__(self, size: int = 10) -> None:
        if size < 1:
            raise ValueError(f"StackedSteps size must be at least 1, got {size}")
        self.size = size
        self.stacking = False  # whether this fit's module takes stacks, to undo at teardown

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Here, not in setup: the optimizers and schedulers exist, and the training data is not loaded yet.
        reasons = single_step_reasons(trainer, trainer.datamodule, pl_module)
        if self.size == 1 or reasons:
            if reasons:
                log.info("training one mini-batch per step, as Lightning does (because of %s)", ", ".join(reasons))
            return
        hooks = backward_hooks(trainer, pl_module)
        log.info(
            "training %d mini-batches per Lightning step (callbacks.stacked_steps), %s",
            self.size,
            f"backward through manual_backward for {', '.join(hooks)}" if hooks else "plain loss.backward()",
        )
        pl_module.automatic_optimization = False
        pl_module.plain_backward = not hooks
        trainer.datamodule.steps_per_batch = self.size
        self.stacking = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.stacking:  # later tests and fits start from the module's and datamodule's own settings
            pl_module.automatic_optimization = True
            pl_module.plain_backward = False
            trainer.datamodule.steps_per_batch = 1
            self.stacking = False


def share_step_count(checkpoint: dict[str, Any]) -> None:
    """Give both of Lightning's optimizer-step counters the steps a checkpoint made, so that `global_step`
    continues whichever path (automatic or manual optimization) the resumed fit takes."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    automatic = loop.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {}).get("step")
    manual = loop.get("epoch_loop.manual_optimization.optim_step_progress")
    if automatic is None or manual is None:
        return
    done = max(automatic["total"]["completed"], manual["total"]["completed"])
    for progress in (automatic, manual):
        progress["total"] = {"ready": done, "completed": done}
