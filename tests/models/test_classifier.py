"""Classifier: what its config says is what Lightning gets (the scheduler's interval)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from helpers import fit


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
