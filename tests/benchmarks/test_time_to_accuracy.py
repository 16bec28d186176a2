"""The benchmark scripts measure what they say, on runs short enough for the suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import time_to_accuracy  # noqa: E402


def test_time_to_accuracy_counts_images_and_seconds_for_the_command_and_the_hand_loop_alike(tmp_path):
    out = tmp_path / "result.json"
    # The script as a user runs it: its hand loop's process must never import Lightning.
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "time_to_accuracy.py"),
            *("--preset", "tutorial_softmax", "--seeds", "1", "--every", "2", "--target", "0.15"),
            *("--out", str(out)),
            *("trainer.max_epochs=2", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "test=false"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    summary = json.loads(out.read_text())
    (row,) = summary["rows"]
    # Batches of 100, a test score every 2 mini-batches and at each epoch's end, 4 mini-batches an epoch.
    assert [p[0] for p in row["points"]] == [p[0] for p in row["loop_points"]] == [200, 400, 600, 800]
    for points in (row["points"], row["loop_points"]):
        seconds = [s for _, s, _ in points]
        assert seconds == sorted(seconds) and seconds[0] > 0
    images, seconds, _ = next(p for p in row["points"] if p[2] >= 0.15)
    assert (row["images_to_target"], row["seconds_to_target"]) == (images, seconds)
    assert row["ratio"] == pytest.approx(row["train_seconds"] / row["loop_train_seconds"])
    assert row["train_seconds"] == row["points"][-1][1] and row["acc_after_run"] == row["points"][-1][2]
    assert summary["preset"] == "tutorial_softmax" and summary["reached"] == 1 and summary["machine"]["cpu"]


def test_a_seed_that_never_reaches_the_target_counts_as_a_miss():
    reached = {"points": [[100, 1.0, 0.95], [200, 2.0, 0.991]], "metrics": {}}
    missed = {"points": [[100, 1.5, 0.97], [200, 3.0, 0.989]], "metrics": {}}
    rows = [
        time_to_accuracy.seed_row(1, reached, {**missed, "seconds": 3.0}, 0.99),
        time_to_accuracy.seed_row(2, missed, {**reached, "seconds": 2.0}, 0.99),
    ]
    assert (rows[0]["images_to_target"], rows[0]["seconds_to_target"], rows[0]["loop_seconds_to_target"]) == (
        200,
        2.0,
        None,
    )
    summary = time_to_accuracy.summarise(rows, 0.99)
    assert summary["reached"] == 1 and summary["mean_seconds_to_target"] == summary["worst_seconds_to_target"] == 2.0
    assert summary["worst_acc"] == 0.989 and summary["mean_acc"] == pytest.approx((0.991 + 0.989) / 2)
