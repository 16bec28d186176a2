"""A multirun's summary: every job's metrics sorted by test accuracy, failed, cut-off and killed jobs shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mnist_lab.sweeps.summary import read_sweep

from helpers import error_lines, job_metrics, multirun, run_cli, summary_rows

pytestmark = pytest.mark.long  # run first (tests/conftest.py)


def test_three_job_sweep_summary_matches_every_jobs_metrics_sorted_by_test_accuracy(tmp_path):
    sweep = tmp_path / "sweep"
    result = multirun(sweep, "model=softmax,mlp,cnn")
    assert result.returncode == 0, result.stderr
    (sweep / "summary.csv").unlink()  # the Hydra callback wrote one; the command must rebuild it

    printed = run_cli(str(sweep), module="mnist_lab.report")
    assert printed.returncode == 0, printed.stderr
    rows = summary_rows(sweep)
    assert sorted(r["job"] for r in rows) == ["0_softmax", "1_mlp", "2_cnn"]
    for row in rows:
        metrics = job_metrics(sweep, row["job"])
        assert row["status"] == "done" and row["stop_reason"] == metrics["stop_reason"]
        assert row["overrides"] == f"model={row['job'].split('_', 1)[1]}"  # the common overrides are listed once
        assert int(row["epochs"]) == metrics["epochs_run"] == 1
        assert float(row["test/acc"]) == pytest.approx(metrics["test/acc"])
        assert float(row["val/acc_best"]) == pytest.approx(metrics["val/acc_best"])
        assert float(row["seconds"]) == pytest.approx(metrics["train_seconds"])
    accuracies = [float(r["test/acc"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    markdown = (sweep / "summary.md").read_text()
    assert markdown in printed.stdout and f"tensorboard --logdir {sweep}" in markdown
    assert f"| {rows[0]['job']} | model=" in markdown


def test_a_failed_job_is_summarised_as_failed_and_the_others_are_kept(tmp_path):
    sweep = tmp_path / "sweep"
    result = multirun(sweep, "model=softmax", "optimizer.lr=0.01,-1,0.02")
    assert result.returncode != 0  # the sweep says that one of its jobs failed, in one line
    last = error_lines(result)[-1]  # after the job's own log line
    assert last.startswith("error: job 1_softmax of the sweep failed: optimizer.lr must be a number > 0, got -1")
    rows = {r["job"]: r for r in summary_rows(sweep)}
    assert rows["1_softmax"]["status"] == "failed"
    assert rows["1_softmax"]["stop_reason"].startswith("optimizer.lr must be a number > 0, got -1")
    assert list(rows)[-1] == "1_softmax"  # failed jobs come last
    for job in ("0_softmax", "2_softmax"):  # the job after the failure ran too
        assert rows[job]["status"] == "done"
        assert float(rows[job]["test/acc"]) == pytest.approx(job_metrics(sweep, job)["test/acc"])


def fake_job(sweep: Path, name: str, overrides: list[str], metrics: dict | None = None, log: str = "") -> None:
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "train.log").write_text(log)


def test_cut_off_and_killed_jobs_are_shown_not_dropped(tmp_path):
    sweep = tmp_path / "multirun" / "2026-01-01" / "10-00-00"
    done = {"epochs_run": 3, "stop_reason": "max_epochs", "val/acc_best": 0.9, "test/acc": 0.91, "train_seconds": 5.0}
    fake_job(sweep, "0_mlp", ["model=mlp"], done)
    fake_job(sweep, "1_cnn", ["model=cnn"], {"epochs_run": 1, "stop_reason": "interrupted", "val/acc_best": 0.95})
    fake_job(sweep, "2_cnn", ["model=cnn", "seed=2"], None, "[2026-01-01 10:00:00,000][mnist_lab][INFO] - started\n")
    fake_job(sweep, "3_mlp", ["model=mlp", "seed=3"], {**done, "test/acc": 0.93})
    fake_job(
        sweep,
        "4_mlp",
        ["model=mlp", "optimizer.lr=1e9"],
        {"epochs_run": 1, "stop_reason": "non_finite_loss"},
        "[2026-01-01 10:00:00,000][mnist_lab.cli.command][ERROR] - the training loss became nan in epoch 2\n",
    )
    jobs = read_sweep(sweep)
    assert [(j.name, j.status) for j in jobs] == [
        ("3_mlp", "done"),
        ("0_mlp", "done"),
        ("1_cnn", "interrupted"),
        ("4_mlp", "failed"),
        ("2_cnn", "no result"),
    ]
    assert jobs[3].error == "the training loss became nan in epoch 2"
    assert "killed, or still running" in jobs[-1].error
