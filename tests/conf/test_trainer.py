"""Every Trainer flag of conf/trainer/default.yaml keeps Lightning's meaning, through the
real `python -m mnist_lab` command.

A training step is one mini-batch of `data.batch_size` images and one optimizer step, so step
budgets, batch limits, clipping, accumulation and per-step callbacks mean what they mean in any
Lightning project. Each run carries a recording callback (tests/probes.py).
"""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import recorded_fit


def test_gradient_clip_val_clips_the_norm_of_every_step(tmp_path):
    record, _ = recorded_fit(
        tmp_path,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=10",
        "optimizer=sgd",
        "trainer.gradient_clip_val=0.05",
    )
    assert max(record["grad_norm_before"]) > 0.05  # there was something to clip
    assert len(record["grad_norm_after"]) == 10 and max(record["grad_norm_after"]) <= 0.05 + 1e-6


def test_gradient_clip_algorithm_value_clips_each_element(tmp_path):
    record, _ = recorded_fit(
        tmp_path,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=10",
        "optimizer=sgd",
        "trainer.gradient_clip_val=0.001",
        "trainer.gradient_clip_algorithm=value",
    )
    assert max(record["grad_max_before"]) > 0.001
    assert max(record["grad_max_after"]) <= 0.001 + 1e-9


def test_accumulate_grad_batches_makes_one_optimizer_step_per_n_mini_batches(tmp_path):
    record, _ = recorded_fit(
        tmp_path, "trainer.max_epochs=1", "trainer.limit_train_batches=10", "trainer.accumulate_grad_batches=2"
    )
    assert record["calls"]["before_backward"] == record["calls"]["after_backward"] == 10
    assert record["calls"]["before_optimizer_step"] == 5 and record["global_step"] == 5


def test_max_steps_counts_optimizer_steps_and_is_the_stop_reason(tmp_path):
    record, metrics = recorded_fit(
        tmp_path, "trainer.max_epochs=5", "trainer.limit_train_batches=4", "trainer.max_steps=7"
    )
    assert record["global_step"] == 7 and record["calls"]["train_batch"] == 7
    assert metrics["stop_reason"] == "max_steps" and "val/acc_best" in metrics


def test_batch_limits_and_val_check_interval_count_mini_batches(tmp_path):
    record, _ = recorded_fit(
        tmp_path,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=20",
        "trainer.limit_val_batches=2",
        "trainer.val_check_interval=5",
        "data.batch_size=64",
    )
    assert record["train_batch_sizes"] == [64] * 20
    assert record["val_batches"] == 4 * 2  # validation after steps 5, 10, 15 and 20, two batches each


def test_per_step_hooks_see_every_optimizer_step(tmp_path):
    record, _ = recorded_fit(tmp_path, "trainer.max_epochs=2", "trainer.limit_train_batches=6")
    assert record["calls"] == {
        "train_batch": 12,
        "before_backward": 12,
        "after_backward": 12,
        "before_optimizer_step": 12,
    }
    assert record["global_steps"] == list(range(1, 13))


def test_learning_rate_monitor_logs_every_n_steps(tmp_path):
    monitor = "+callbacks.lr_monitor={_target_:lightning.pytorch.callbacks.LearningRateMonitor,logging_interval:step}"
    recorded_fit(
        tmp_path, "trainer.max_epochs=1", "trainer.limit_train_batches=20", "trainer.log_every_n_steps=5", monitor
    )
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert [e.step for e in events.Scalars("lr-Adam")] == [4, 9, 14, 19]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_each_precision_trains(tmp_path, precision):
    record, metrics = recorded_fit(
        tmp_path,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=50",
        f"trainer.precision={precision}",
        "trainer.limit_val_batches=5",
    )
    on_cpu = {"16-mixed": "bf16-mixed"}.get(precision, precision)  # Lightning's own choice on a CPU
    assert record["precision"] == on_cpu and record["calls"]["before_optimizer_step"] == 50
    assert metrics["val/acc"] > 0.7  # it learned (10% by chance)


def test_fast_dev_run_runs_one_batch_of_each_stage(tmp_path):
    record, metrics = recorded_fit(tmp_path, "trainer.fast_dev_run=true", "test=true")
    assert record["calls"]["train_batch"] == 1 and record["val_batches"] == 1
    assert metrics["epochs_run"] == 1 and "test/acc" in metrics
