"""mnist_lab's own callbacks: the tutorial's log line and the epoch timer."""

import logging
import re

import pytest

from mnist_lab.training.callbacks import tutorial_line

from helpers import fit


def test_tutorial_line_has_the_tutorials_format():
    assert tutorial_line(1, 5.251983, 0.303154) == "Epoch: 0001 cost= 5.25198 accuracy= 0.30315"
    assert tutorial_line(201, 0.17524, 0.9488) == "Epoch: 0201 cost= 0.17524 accuracy= 0.94880"


def test_tutorial_mlp_starts_like_the_published_curve(tmp_path, caplog):
    """Published: epoch 1 cost 5.25 accuracy 0.30; the replay starts as low and climbs (epochs of 200 steps here)."""
    with caplog.at_level(logging.INFO, logger="mnist_lab.training.callbacks"):
        metrics = fit(
            tmp_path,
            "experiment=tutorial_mlp",
            "trainer.max_epochs=5",
            "trainer.limit_train_batches=200",
            "test=false",
            "callbacks.tutorial_log.every_n_epochs=1",
        )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Epoch:")]
    assert [line[:11] for line in lines] == [f"Epoch: {e:04d}" for e in range(1, 6)]
    values = [tuple(map(float, re.findall(r"= ([\d.]+)", line))) for line in lines]
    (cost_1, acc_1), (cost_5, acc_5) = values[0], values[-1]
    assert acc_1 < 0.5 and cost_1 > 3.0  # N(0, 1) weights: a poor start, like the published 0.30 / 5.25
    assert acc_5 > acc_1 + 0.2 and cost_5 < cost_1 / 2
    assert metrics["train/acc"] == pytest.approx(acc_5, abs=1e-5)
    assert len(metrics["epoch_seconds"]) == 5 and all(s > 0 for s in metrics["epoch_seconds"])
