"""mnist_lab's own callbacks: the tutorial's log line, the epoch timer, and Ctrl-C: a run stopped after its step
that resumes to end exactly like an uninterrupted one."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lab.training.callbacks import tutorial_line

from helpers import QUIET, TESTS, comparable, fit, run_cli, wait_for

pytestmark = pytest.mark.long  # run first (tests/conftest.py)


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


HOOKED = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}  # for hooked_run


# A CNN (so dropout draws random numbers) on 2 batches per epoch, quick to validate. One thread:
# runs compared bit for bit must add up their floats in the same order.
SMALL_CNN = [
    "model=cnn",
    "threads=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "test=false",
    "callbacks.accuracy_stop=null",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
]


# The smallest real run: softmax regression, one step per epoch, no test, no TensorBoard.
TINY = [
    "model=softmax",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "test=false",
    "logger=none",
    "callbacks.accuracy_stop=null",
    *QUIET,
]


TESTS_ON_PATH = {"PYTHONPATH": str(TESTS)}


@pytest.mark.parametrize(
    ("signum", "args"),
    [
        pytest.param(signal.SIGINT, SMALL_CNN, id="SIGINT-single-steps"),
        pytest.param(signal.SIGTERM, SMALL_CNN, id="SIGTERM-single-steps", marks=pytest.mark.slow),
    ],
)
def test_interrupted_then_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, signum, args, children):
    whole = run_cli(*args, f"hydra.run.dir={tmp_path / 'whole'}", env=TESTS_ON_PATH)
    assert whole.returncode == 0, whole.stdout[-2000:]

    run = tmp_path / "cut"
    child = children(*args, f"hydra.run.dir={run}", env=TESTS_ON_PATH)
    wait_for(lambda: list((run / "checkpoints").glob("epoch_000*.ckpt")), alive=child)  # one epoch done
    child.proc.send_signal(signum)
    assert child.wait() == 128 + signum
    assert f"resume with: python -m mnist_lab resume={run}" in child.output
    stopped = json.loads((run / "metrics.json").read_text())
    epochs = int(next(a for a in args if a.startswith("trainer.max_epochs=")).split("=")[1])
    assert stopped["stop_reason"] == "interrupted" and 1 <= stopped["epochs_run"] < epochs

    resumed = run_cli(f"resume={run}", "trust=[probes.]", env=TESTS_ON_PATH)
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "whole", run))
    assert comparable(a) == comparable(b) and b["stop_reason"] == "max_epochs"
    weights = [
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in (tmp_path / "whole", run)
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    curves = []
    for d in (tmp_path / "whole", run):
        events = EventAccumulator(str(d))
        events.Reload()
        curves.append([(e.step, e.value) for e in events.Scalars("train/acc")])
    assert curves[0] == curves[1] and len(curves[0]) == epochs  # the curve continues where it stopped


def test_a_second_ctrl_c_exits_at_once_when_the_first_would_take_long(tmp_path, children):
    # Every step after the first takes a minute (tests/probes.py), so the first Ctrl-C, which
    # waits for the step to end, cannot stop the run for a minute; only the second can.
    run, marker = tmp_path / "run", tmp_path / "slow_step_started"
    child = children(
        *TINY,
        "trainer.max_epochs=5",
        "trainer.limit_train_batches=3",
        "+callbacks.slow._target_=probes.SlowStep",
        f"+callbacks.slow.marker={marker}",
        f"hydra.run.dir={run}",
        env=HOOKED,
    )
    wait_for(marker.exists, alive=child)
    child.proc.send_signal(signal.SIGINT)
    child.wait_for_line("SIGINT received: stopping after this training step", timeout=10)
    time.sleep(1.0)
    assert child.proc.poll() is None, "the first Ctrl-C alone should wait for the slow step to end"
    sent = time.monotonic()
    child.proc.send_signal(signal.SIGINT)
    try:
        code = child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("the second Ctrl-C did not end the run: it was still waiting for its step 5 s later")
    assert code == 130 and time.monotonic() - sent < 2.0


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
