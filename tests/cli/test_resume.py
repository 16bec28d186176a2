"""`resume=<run folder>` and `resume=latest`: a run continued with its own config."""

from __future__ import annotations

import json

from helpers import QUIET, one_error_line, run_cli

SMALL = ["trainer.accelerator=cpu", "model=softmax", *QUIET]


def test_resume_latest_continues_the_newest_run(tmp_path):
    first = run_cli(*SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=5", "test=false", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (run,) = [p.parent for p in tmp_path.glob("outputs/*/*/metrics.json")]
    resumed = run_cli("resume=latest", "trainer.max_epochs=2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2
    assert len(list(tmp_path.glob("outputs/*/*/metrics.json"))) == 1  # the same folder, no new one
    assert "resume=latest found no training run" in one_error_line(run_cli("resume=latest", cwd=tmp_path / "outputs"))


def test_resume_of_a_folder_that_is_not_a_run_says_so(tmp_path):
    result = run_cli(f"resume={tmp_path}")
    assert one_error_line(result) == (
        f"resume={tmp_path}: not a mnist_lab run folder (no .hydra/config.yaml); give the folder of a run"
    )
