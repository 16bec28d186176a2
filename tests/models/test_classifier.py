"""Classifier: what its config says is what Lightning gets (the scheduler's interval)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from helpers import fit, one_error_line, run_cli


@pytest.mark.parametrize(
    ("overrides", "interval"),
    [(["scheduler=cosine"], "epoch"), (["scheduler=cosine", "scheduler.interval=step"], "step")],
)
def test_the_schedulers_interval_is_the_one_its_config_names(compose_cfg, overrides, interval):
    model = instantiate(compose_cfg(*overrides).model)
    configured = model.configure_optimizers()["lr_scheduler"]
    assert configured["interval"] == interval
    assert type(configured["scheduler"]).__name__ == "CosineAnnealingLR"


def test_one_cycle_is_stepped_after_every_optimizer_step_over_the_run(tmp_path):
    fit(
        tmp_path,
        "model=softmax",
        "scheduler=onecycle",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "test=false",
        "logger=none",
    )
    schedule = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["lr_schedulers"][0]
    assert schedule["last_epoch"] == 3 and schedule["total_steps"] == 3


def ckpt_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.ckpt")]


def test_non_finite_loss_stops_with_a_message_and_keeps_the_good_checkpoints(tmp_path):
    result = run_cli(
        "model=softmax",
        "optimizer=sgd",
        "optimizer.lr=1e37",
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 1
    error = one_error_line(result)
    assert "training loss became inf" in error and "lower optimizer.lr" in error
    assert json.loads((tmp_path / "metrics.json").read_text())["stop_reason"] == "non_finite_loss"
    (kept,) = ckpt_files(tmp_path)
    state = torch.load(kept, weights_only=True)["state_dict"]
    assert all(torch.isfinite(t).all() for k, t in state.items() if k.startswith("net."))
