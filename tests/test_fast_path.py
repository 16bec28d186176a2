"""Stacked steps (mnist_lab.fast_path): where no flag or callback would notice, the module takes 10
mini-batches per Lightning step and trains exactly as Lightning's ordinary path does; anywhere else
it stands aside."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.plugins.precision import MixedPrecision
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lab.callbacks import EpochTimer, GracefulInterrupt
from mnist_lab.classifier import Classifier
from mnist_lab.data import MNISTDataModule
from mnist_lab.fast_path import StackedSteps, backward_hooks, single_step_reasons

from conftest import QUIET, run_cli

TESTS = Path(__file__).parent
SOFTMAX = Classifier(
    {"_target_": "mnist_lab.nets.SoftmaxRegression"}, {"_target_": "torch.optim.SGD", "_partial_": True}
)
STACKED = "training 10 mini-batches per Lightning step"


def run(tmp_path: Path, name: str, *overrides: str, probe: str = "StepProbe") -> Path:
    """The real command, with a probe of the per-step hooks (flags_probe); returns the run folder."""
    probe = f"+callbacks.probe={{_target_:flags_probe.{probe},path:{tmp_path / name}.json}}"
    args = ["trainer.accelerator=cpu", "test=false", "callbacks.accuracy_stop=null", *QUIET, probe, *overrides]
    result = run_cli(*args, f"hydra.run.dir={tmp_path / name}", cwd=tmp_path, env={"PYTHONPATH": str(TESTS)})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return tmp_path / name


def last_checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_stacked_steps_train_bit_for_bit_like_lightnings_single_steps(tmp_path):
    # Batches of 300: 184 mini-batches an epoch, so the last stack holds 4 and the last mini-batch 100.
    common = ["model=mlp", "model.dropout=0.2", "data.batch_size=300", "trainer.max_epochs=2"]
    stacked = run(tmp_path, "stacked", *common)  # its probe hooks backward: manual_backward
    plain = run(tmp_path, "plain", *common, probe="OptimizerStepProbe")  # nothing hooks backward
    single = run(tmp_path, "single", *common, "callbacks.stacked_steps=null")
    assert f"{STACKED} (callbacks.stacked_steps), backward through manual_backward for callback StepProbe" in (
        (stacked / "train.log").read_text()
    )
    assert f"{STACKED} (callbacks.stacked_steps), plain loss.backward()" in (plain / "train.log").read_text()

    expected = last_checkpoint(single)
    assert expected["global_step"] == 2 * 184
    for run_dir in (stacked, plain):
        checkpoint = last_checkpoint(run_dir)
        assert checkpoint["global_step"] == expected["global_step"]
        assert checkpoint["state_dict"].keys() == expected["state_dict"].keys()
        assert all(torch.equal(checkpoint["state_dict"][k], v) for k, v in expected["state_dict"].items())
        metrics, expected_metrics = (json.loads((r / "metrics.json").read_text()) for r in (run_dir, single))
        for key in ("train/loss", "train/acc", "val/acc", "val/acc_best"):
            assert metrics[key] == pytest.approx(expected_metrics[key], abs=1e-6)
        for tag in ("train/acc", "val/acc", "epoch"):  # the same curves, filed under the same steps and epochs
            assert scalars(run_dir, tag) == scalars(single, tag)
    assert [step for step, _ in scalars(stacked, "train/acc")] == [184, 368]
    assert {epoch for _, epoch in scalars(stacked, "epoch")} == {0.0, 1.0}

    # Backward and optimizer-step callbacks see every optimizer step, with its own global_step.
    for name in ("stacked", "single"):
        seen = json.loads((tmp_path / f"{name}.json").read_text())
        assert seen["before_backward"] == seen["after_backward"] == seen["before_optimizer_step"] == list(range(368))
    assert json.loads((tmp_path / "plain.json").read_text())["before_optimizer_step"] == list(range(368))


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"max_steps": 105}, "trainer.max_steps"),
        ({"limit_train_batches": 20}, "trainer.limit_train_batches"),
        ({"val_check_interval": 50}, "trainer.val_check_interval"),
        ({"accumulate_grad_batches": 2}, "trainer.accumulate_grad_batches"),
        ({"gradient_clip_val": 0.5}, "trainer.gradient_clip_val"),
        ({"overfit_batches": 2}, "trainer.overfit_batches"),
        ({"fast_dev_run": True}, "trainer.fast_dev_run"),
        ({"profiler": "simple"}, "trainer.profiler"),
        ({"max_time": "00:00:10:00"}, "callback Timer"),
        ({"callbacks": [LearningRateMonitor(logging_interval="step")]}, "callback LearningRateMonitor"),
        ({"callbacks": [ModelCheckpoint(every_n_train_steps=100)]}, "callback ModelCheckpoint"),
    ],
)
def test_a_flag_or_callback_that_counts_training_batches_keeps_single_steps(tmp_path, flags, reason):
    trainer = L.Trainer(logger=False, default_root_dir=tmp_path, **flags)
    assert reason in single_step_reasons(trainer, MNISTDataModule(), SOFTMAX)


def test_the_default_callbacks_leave_stacked_steps_on(tmp_path):
    callbacks = [ModelCheckpoint(monitor="val/acc", mode="max"), ModelCheckpoint(), EpochTimer(), GracefulInterrupt()]
    trainer = L.Trainer(logger=False, default_root_dir=tmp_path, callbacks=callbacks, max_epochs=3)
    assert single_step_reasons(trainer, MNISTDataModule(), SOFTMAX) == []
    assert single_step_reasons(trainer, MNISTDataModule(), L.LightningModule()) == [
        "a module whose training_step takes one mini-batch"
    ]
    assert "data.augment" in single_step_reasons(trainer, MNISTDataModule(augment=torch.nn.Identity()), SOFTMAX)


class BackwardHook(L.LightningModule):
    def on_after_backward(self) -> None: ...


class GradientWatcher(L.Callback):
    def on_before_backward(self, trainer, pl_module, loss) -> None: ...


@pytest.mark.parametrize(
    ("flags", "module", "hooks"),
    [
        ({}, SOFTMAX, []),
        ({"precision": "bf16-mixed"}, SOFTMAX, []),
        ({"callbacks": [GradientWatcher()]}, SOFTMAX, ["callback GradientWatcher"]),
        ({}, BackwardHook(), ["the module"]),
        ({"plugins": [MixedPrecision("16-mixed", "cpu")]}, SOFTMAX, ["the precision plugin"]),  # a loss scaler
        ({"strategy": "ddp", "devices": 1}, SOFTMAX, ["the strategy"]),
    ],
)
def test_stacked_steps_call_plain_backward_only_where_nothing_else_acts_on_it(tmp_path, flags, module, hooks):
    trainer = L.Trainer(logger=False, default_root_dir=tmp_path, accelerator="cpu", **flags)
    assert backward_hooks(trainer, module) == hooks


def test_max_steps_alone_stops_at_its_exact_step(tmp_path):
    run_dir = run(tmp_path, "run", "model=softmax", "trainer.max_steps=105")
    assert STACKED not in (run_dir / "train.log").read_text()
    assert last_checkpoint(run_dir)["global_step"] == 105


def test_a_stacked_run_resumed_on_lightnings_path_keeps_counting_steps(tmp_path):
    first = run(tmp_path, "run", "model=softmax", "trainer.max_epochs=1")
    assert last_checkpoint(first)["global_step"] == 550
    result = run_cli(
        f"resume={first}",
        "trust=[flags_probe.StepProbe]",
        "trainer.max_epochs=2",
        "callbacks.stacked_steps=null",
        *QUIET,
        cwd=tmp_path,
        env={"PYTHONPATH": str(TESTS)},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert last_checkpoint(first)["global_step"] == 1100


def test_stacked_steps_train_in_mixed_precision(tmp_path):
    run_dir = run(tmp_path, "run", "model=softmax", "trainer.max_epochs=1", "trainer.precision=bf16-mixed")
    assert STACKED in (run_dir / "train.log").read_text()
    assert last_checkpoint(run_dir)["global_step"] == 550
    assert json.loads((run_dir / "metrics.json").read_text())["val/acc"] > 0.85


class ManualModule(L.LightningModule):
    """A user's own module with manual optimization: stacked steps never apply to it."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.layer = torch.nn.Linear(784, 10)

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(torch.nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1]))
        optimizer.step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def quiet_trainer(tmp_path: Path, **flags) -> L.Trainer:
    """A one-epoch CPU Trainer that writes nothing, with stacked steps on."""
    return L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        callbacks=[StackedSteps()],
        **flags,
    )


def test_a_module_of_the_users_own_keeps_its_optimization_mode_through_fit(tmp_path):
    module, datamodule = ManualModule(), MNISTDataModule(download=False)
    trainer = quiet_trainer(tmp_path, limit_val_batches=1)
    trainer.fit(module, datamodule=datamodule)
    assert module.automatic_optimization is False and trainer.global_step == 550


@pytest.mark.parametrize("normalize", [True, False])
def test_the_network_trains_on_scaled_pixels_exactly_when_data_normalize_is_set(tmp_path, normalize):
    module = Classifier(
        {"_target_": "mnist_lab.nets.SoftmaxRegression"}, {"_target_": "torch.optim.Adam", "_partial_": True}
    )
    inputs = []
    module.net.register_forward_hook(
        lambda net, args, out: inputs.append(args[0].mean().item()) if net.training else None
    )
    datamodule = MNISTDataModule(download=False, normalize=normalize, val_size=59_000)  # 1,000 training images
    quiet_trainer(tmp_path).fit(module, datamodule=datamodule)
    assert len(inputs) == 10
    if normalize:
        assert all(abs(mean) < 0.1 for mean in inputs)  # (x - 0.13) / 0.31 over a batch
    else:
        assert all(0.09 < mean < 0.17 for mean in inputs)  # pixels in [0, 1] as read
