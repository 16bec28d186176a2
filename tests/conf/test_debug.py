"""The debug presets (conf/debug/): fdr, limit, overfit, profiler, each in its own folder."""

from __future__ import annotations

import json

from helpers import QUIET, run_cli

SMALL = ["trainer.accelerator=cpu", "model=softmax", *QUIET]


def test_debug_fdr_runs_one_batch_and_writes_no_checkpoint(tmp_path):
    result = run_cli(*SMALL, "debug=fdr", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Running in `fast_dev_run` mode: will run the requested loop using 1 batch(es)" in result.stdout
    assert not list(tmp_path.rglob("*.ckpt"))


def test_debug_limit_runs_three_short_epochs(tmp_path):
    result = run_cli(*SMALL, "debug=limit", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3 and metrics["stop_reason"] == "max_epochs"


def test_debug_overfit_learns_its_few_batches_by_heart(tmp_path):
    result = run_cli(
        "trainer.accelerator=cpu",
        "model=mlp",
        "model.net.activation=relu",
        *QUIET,
        "debug=overfit",
        "test=false",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "metrics.json").read_text())["train/acc"] > 0.99


def test_debug_profiler_writes_where_the_time_went(tmp_path):
    result = run_cli(
        *SMALL, "debug=profiler", "trainer.limit_train_batches=10", "test=false", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / "fit-profile.txt").read_text()
    assert "run_training_epoch" in report and "run_training_batch" in report


def test_debug_runs_go_to_their_own_folder(tmp_path):
    result = run_cli(*SMALL, "debug=limit", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("metrics.json")] == [("outputs", "debug")]
