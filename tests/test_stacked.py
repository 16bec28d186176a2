"""Stacked steps (`steps=stacked`, mnist_lab.training.stacked), the opt-in speed path: 20 mini-batches per
Lightning step, trained exactly as `Classifier` trains on Lightning's ordinary loop; what would notice the
difference is refused before training starts."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.plugins.precision import MixedPrecision
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lab.data.datamodule import MNISTDataModule
from mnist_lab.models.classifier import Classifier
from mnist_lab.training.callbacks import EpochTimer, GracefulInterrupt
from mnist_lab.training.stacked import StackedClassifier, backward_hooks, unstackable

from conftest import QUIET, one_error_line, run_cli

TESTS = Path(__file__).parent
NET = {"_target_": "mnist_lab.models.nets.SoftmaxRegression"}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True}
STACKED = "training 20 mini-batches per Lightning step (steps=stacked)"


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


def test_stacked_steps_train_bit_for_bit_like_lightnings_ordinary_loop(tmp_path):
    # Batches of 300: 184 mini-batches an epoch, so the last stack holds 4 and the last mini-batch 100;
    # one-cycle is stepped after every optimizer step; each mini-batch is augmented once, on the device.
    common = ["model=mlp", "model.net.hidden_sizes=[32,32]", "model.net.dropout=0.2", "data.batch_size=300"]
    common += ["trainer.max_epochs=2", "scheduler=onecycle"]
    common.append("data.augment={_target_:mnist_lab.data.augment.RandomAffine,degrees:10}")
    stacked = run(tmp_path, "stacked", *common, "steps=stacked")  # its probe hooks backward: manual_backward
    plain = run(tmp_path, "plain", *common, "steps=stacked", probe="OptimizerStepProbe")  # nothing hooks backward
    single = run(tmp_path, "single", *common)
    assert f"{STACKED}, backward through manual_backward for callback StepProbe" in (stacked / "train.log").read_text()
    assert f"{STACKED}, plain loss.backward()" in (plain / "train.log").read_text()
    assert STACKED not in (single / "train.log").read_text()

    expected = last_checkpoint(single)
    assert expected["global_step"] == 2 * 184
    for run_dir in (stacked, plain):
        checkpoint = last_checkpoint(run_dir)
        assert checkpoint["global_step"] == expected["global_step"]
        assert checkpoint["state_dict"].keys() == expected["state_dict"].keys()
        assert all(torch.equal(checkpoint["state_dict"][k], v) for k, v in expected["state_dict"].items())
        assert checkpoint["lr_schedulers"] == expected["lr_schedulers"]
        metrics, expected_metrics = (json.loads((r / "metrics.json").read_text()) for r in (run_dir, single))
        for key in ("train/loss", "train/acc", "val/acc", "val/acc_best"):
            assert metrics[key] == pytest.approx(expected_metrics[key], abs=1e-6)
        for tag in ("train/acc", "val/acc", "epoch"):  # the same curves, filed under the same steps and epochs
            assert scalars(run_dir, tag) == scalars(single, tag)
    assert [step for step, _ in scalars(stacked, "train/acc")] == [183, 367]

    # Backward and optimizer-step callbacks see every optimizer step, with its own global_step.
    for name in ("stacked", "single"):
        seen = json.loads((tmp_path / f"{name}.json").read_text())
        assert seen["before_backward"] == seen["after_backward"] == seen["before_optimizer_step"] == list(range(368))
    assert json.loads((tmp_path / "plain.json").read_text())["before_optimizer_step"] == list(range(368))


class CountingBar(TQDMProgressBar):
    """The progress bar, recording where it stood when each training epoch ended."""

    def __init__(self) -> None:
        super().__init__(refresh_rate=1)
        self.seen: list[tuple[int, int]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seen.append((self.train_progress_bar.n, self.train_progress_bar.total))
        super().on_train_epoch_end(trainer, pl_module)


def quiet_trainer(tmp_path: Path, **flags) -> L.Trainer:
    """A one-epoch CPU Trainer that writes nothing."""
    return L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **flags,
    )


@pytest.mark.parametrize("module", [Classifier, StackedClassifier])
def test_the_progress_bar_counts_mini_batches_on_both_paths(tmp_path, module):
    bar, datamodule = CountingBar(), MNISTDataModule(download=False, batch_size=256, val_size=50_000)
    trainer = quiet_trainer(tmp_path, callbacks=[bar], limit_val_batches=1)
    trainer.fit(module(net=NET, optimizer=SGD), datamodule=datamodule)
    assert bar.seen == [(40, 40)]  # 10,000 images in batches of 256: 39 full, one of 16


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"val_check_interval": 50}, "trainer.val_check_interval"),
        ({"accumulate_grad_batches": 2}, "trainer.accumulate_grad_batches"),
        ({"gradient_clip_val": 0.5}, "trainer.gradient_clip_val"),
        ({"max_time": "00:00:10:00"}, "callback Timer"),
        ({"callbacks": [LearningRateMonitor(logging_interval="step")]}, "callback LearningRateMonitor"),
        ({"callbacks": [ModelCheckpoint(every_n_train_steps=100)]}, "callback ModelCheckpoint"),
    ],
)
def test_what_counts_lightning_steps_or_batches_cannot_run_stacked(tmp_path, flags, reason):
    trainer = L.Trainer(logger=False, default_root_dir=tmp_path, **flags)
    assert reason in unstackable(trainer)


def test_the_default_callbacks_run_stacked(tmp_path):
    callbacks = [ModelCheckpoint(monitor="val/acc", mode="max"), ModelCheckpoint(), EpochTimer(), GracefulInterrupt()]
    trainer = L.Trainer(logger=False, default_root_dir=tmp_path, callbacks=callbacks, max_epochs=3)
    assert unstackable(trainer) == []


def test_a_setting_stacked_steps_cannot_honour_stops_the_run_with_one_line(tmp_path):
    result = run_cli("model=softmax", "steps=stacked", "trainer.val_check_interval=50", *QUIET, cwd=tmp_path)
    assert result.returncode == 1
    assert one_error_line(result) == (
        "steps=stacked cannot train with trainer.val_check_interval, which count Lightning steps or training "
        "batches, and each step holds 20 mini-batches; leave that out, or train with steps=plain"
    )
    assert not (tmp_path / "outputs").exists()  # nothing trained, nothing left behind


class BackwardHook(L.LightningModule):
    def on_after_backward(self) -> None: ...


class GradientWatcher(L.Callback):
    def on_before_backward(self, trainer, pl_module, loss) -> None: ...


SOFTMAX = StackedClassifier(net=NET, optimizer=SGD)


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


@pytest.mark.parametrize(("flag", "steps"), [("trainer.max_steps=105", 105), ("trainer.limit_train_batches=23", 46)])
def test_step_and_batch_limits_stop_stacked_steps_at_their_exact_mini_batch(tmp_path, flag, steps):
    run_dir = run(tmp_path, "run", "model=softmax", "steps=stacked", "trainer.max_epochs=2", flag)
    assert STACKED in (run_dir / "train.log").read_text()
    assert last_checkpoint(run_dir)["global_step"] == steps


def test_a_stacked_run_resumed_by_the_plain_classifier_keeps_counting_steps(tmp_path):
    first = run(tmp_path, "run", "model=softmax", "steps=stacked", "trainer.max_epochs=1")
    assert last_checkpoint(first)["global_step"] == 550
    result = run_cli(
        f"resume={first}",
        "trust=[flags_probe.StepProbe]",
        "trainer.max_epochs=2",
        "model._target_=mnist_lab.models.classifier.Classifier",
        "~model.stack",
        *QUIET,
        cwd=tmp_path,
        env={"PYTHONPATH": str(TESTS)},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert STACKED not in (first / "train.log").read_text().split("resum")[-1]
    assert last_checkpoint(first)["global_step"] == 1100


def test_stacked_steps_train_in_mixed_precision(tmp_path):
    run_dir = run(
        tmp_path, "run", "model=softmax", "steps=stacked", "trainer.max_epochs=1", "trainer.precision=bf16-mixed"
    )
    assert STACKED in (run_dir / "train.log").read_text()
    assert last_checkpoint(run_dir)["global_step"] == 550
    assert json.loads((run_dir / "metrics.json").read_text())["val/acc"] > 0.85


@pytest.mark.parametrize("normalize", [True, False])
def test_the_network_trains_on_scaled_pixels_exactly_when_data_normalize_is_set(tmp_path, normalize):
    module = Classifier(NET, {"_target_": "torch.optim.Adam", "_partial_": True})
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
