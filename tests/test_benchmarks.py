"""The benchmark scripts measure what they say, on runs short enough for the suite."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import time_to_accuracy  # noqa: E402


def test_time_to_accuracy_clocks_training_until_the_test_accuracy_reaches_the_target(tmp_path):
    out = tmp_path / "result.json"
    summary = time_to_accuracy.main(
        [
            "--preset",
            "tutorial_softmax",
            "--seeds",
            "1",
            "--target",
            "0.15",
            "--out",
            str(out),
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=4",
            "trainer.limit_val_batches=1",
            "test=false",
        ]
    )
    points = summary["points"]["1"]
    assert len(points) == 2  # one (training seconds, test accuracy) point per epoch end
    seconds = [s for s, _ in points]
    assert seconds == sorted(seconds) and seconds[0] > 0
    first = next(s for s, acc in points if acc >= 0.15)
    assert summary["reached"] == 1 and summary["mean_seconds"] == pytest.approx(first, abs=0.01)
    assert json.loads(out.read_text())["preset"] == "tutorial_softmax"


def test_a_seed_that_never_reaches_the_target_counts_as_a_miss():
    runs = {1: {"points": [[1.0, 0.95], [2.0, 0.991]]}, 2: {"points": [[1.5, 0.97], [3.0, 0.989]]}}
    summary = time_to_accuracy.summarise(runs, 0.99)
    assert summary["reached"] == 1 and summary["mean_seconds"] == summary["worst_seconds"] == 2.0
    assert summary["seconds_per_seed"] == {"1": 2.0, "2": None}
