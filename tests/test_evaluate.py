"""`python -m mnist_lab.evaluate`: the test set scored as training scored it, with per-digit scores and mistakes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import run_cli


def test_evaluate_matches_the_training_runs_test_accuracy(cnn_run, tmp_path):
    run_dir, metrics = cnn_run
    result = run_cli(f"ckpt_path={run_dir}", f"hydra.run.dir={tmp_path}", module="mnist_lab.evaluate")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"test/acc {metrics['test/acc']:.4f}" in result.stdout
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert report["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-4)
    matrix = np.array(report["confusion_matrix"])
    assert matrix.sum() == 10_000 and np.trace(matrix) / 10_000 == pytest.approx(report["test/acc"], abs=1e-6)
    for digit in range(10):
        recall = matrix[digit, digit] / matrix[digit].sum()
        assert report["per_class"][str(digit)]["recall"] == pytest.approx(recall, abs=1e-6)
    mistakes = report["most_confident_mistakes"]
    assert mistakes and all(m["label"] != m["prediction"] for m in mistakes)
    assert [m["probability"] for m in mistakes] == sorted((m["probability"] for m in mistakes), reverse=True)
    assert (tmp_path / "confusion_matrix.png").is_file() and (tmp_path / "mistakes.png").is_file()
