"""mnist_lab's own callbacks: the tutorial's log line, the epoch timer and the per-epoch history."""

import csv
import json
import logging
import re
from pathlib import Path

import pytest

from mnist_lab.training.callbacks import tutorial_line

from conftest import QUIET, fit, run_cli


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


def csv_rows(run: Path) -> list[dict[str, str]]:
    with (run / "csv" / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_metrics_json_keeps_every_epochs_history_and_a_resumed_run_continues_it(tmp_path):
    """The history matches what Lightning's CSV logger recorded epoch by epoch, across a resume."""
    tiny = [*QUIET, "model=softmax", "logger=csv", "test=false", "trainer.limit_train_batches=5"]
    # Without the best-model checkpoint, only last.ckpt is written at the end of an epoch.
    tiny += ["trainer.limit_val_batches=2", "callbacks.accuracy_stop=null", "callbacks.model_checkpoint=null"]
    tiny += [f"hydra.run.dir={tmp_path}"]
    first = run_cli(*tiny, "trainer.max_epochs=2")
    assert first.returncode == 0, first.stderr[-2000:]
    assert [r["epoch"] for r in json.loads((tmp_path / "metrics.json").read_text())["history"]] == [1, 2]
    logged = csv_rows(tmp_path)  # the resumed run's logger starts a new file
    resumed = run_cli(f"resume={tmp_path}", "trainer.max_epochs=3")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    logged += csv_rows(tmp_path)

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    history = metrics["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    for row in history:
        for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
            (value,) = [float(r[key]) for r in logged if r[key] and int(r["epoch"]) == row["epoch"] - 1]
            assert row[key] == pytest.approx(value, rel=1e-6), (row, key)
    assert [row["seconds"] for row in history] == metrics["epoch_seconds"]
    assert history[-1]["val/acc"] == pytest.approx(metrics["val/acc"])
