"""`python -m mnist_lab tune=lr_find`: Lightning's learning-rate finder, its suggestion, and training with it."""

from __future__ import annotations

import json
import re

import numpy as np
import torch
from PIL import Image

from helpers import QUIET, run_cli

SOFTMAX = ["model=softmax", "trainer.accelerator=cpu", "logger=none", *QUIET]


def test_lr_find_suggests_the_rate_where_the_plotted_loss_falls_fastest(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*SOFTMAX, "tune=lr_find", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = float(re.search(r"suggested learning rate: (\S+)", result.stdout)[1])
    found = json.loads((run_dir / "lr_find.json").read_text())
    lr, loss = np.array(found["lr"]), np.array(found["loss"])  # the finder's rates and smoothed losses
    assert len(lr) == 100 and found["suggestion"] == printed
    # How fast the plotted curve (loss against a log axis of rates) falls at each point: the slope of a
    # straight line through it and its two neighbours each side, leaving out the first 10 points and the
    # last one, as Lightning's suggestion does. The suggestion's is within 10% of the steepest.
    x = np.log10(lr)
    slopes = {i: np.polyfit(x[i - 2 : i + 3], loss[i - 2 : i + 3], 1)[0] for i in range(12, len(lr) - 3)}
    at = int(np.argmin(abs(lr - printed)))
    assert slopes[at] < 0.9 * min(slopes.values()), (printed, slopes[at], min(slopes.values()))
    # Adam on softmax regression: flat up to 1e-3, falling fastest around 1e-2, lowest near 0.5.
    assert 3e-3 < printed < 3e-2 and loss[lr > printed].min() < loss[lr <= printed][-1] - 0.3
    assert (run_dir / "lr_find.txt").read_text() == f"optimizer.lr={printed:g}\n"
    assert f"train with it: python -m mnist_lab {' '.join(SOFTMAX)} optimizer.lr={printed:g}" in result.stdout
    with Image.open(run_dir / "lr_find.png") as plot:  # Lightning's plot of the curve
        assert plot.size == (640, 480)
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.json").exists()  # nothing trained


def test_tune_apply_true_trains_with_the_suggested_rate(tmp_path):
    run_dir = tmp_path / "run"
    short = ["trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.limit_val_batches=1"]
    result = run_cli(
        *SOFTMAX, *short, "trainer.limit_test_batches=1", "tune=lr_find", "tune.apply=true", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lr = float((run_dir / "lr_find.txt").read_text().strip().removeprefix("optimizer.lr="))
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == lr != 0.001  # not the config's own rate
    assert state["global_step"] == 5 and json.loads((run_dir / "metrics.json").read_text())["epochs_run"] == 1
