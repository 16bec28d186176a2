"""Overrides checked before Hydra runs: Trainer flags need no plus, a typo gets the closest name, a
missing plugin names its extra."""

from __future__ import annotations

import json

from helpers import QUIET, one_error_line, run_cli, run_process

SMALL = ["trainer.accelerator=cpu", "model=softmax", *QUIET]


def test_trainer_arguments_need_no_plus_and_a_typo_gets_a_suggestion(tmp_path):
    assert "did you mean trainer.max_epochs?" in one_error_line(run_cli("trainer.max_epoch=3"))
    assert "did you mean model?" in one_error_line(run_cli("modle=cnn"))
    line = one_error_line(run_cli("optimizer=adma"))
    assert "did you mean adam?" in line and "adam, adamw, sgd" in line
    result = run_cli(*SMALL, "trainer.max_steps=3", "test=false", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0 and json.loads((tmp_path / "metrics.json").read_text())["stop_reason"] == "max_steps"


def test_a_missing_plugin_names_the_extra(tmp_path):
    # A Python without the sweeps extra's plugins: hide them from this interpreter's import path.
    shadow = tmp_path / "shadow" / "hydra_plugins"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    result = run_process("-m", "hydra/launcher=joblib", "model=softmax", env={"PYTHONPATH": str(shadow.parent)})
    assert 'needs the Hydra plugins of the sweeps extra: pip install -e ".[sweeps]"' in one_error_line(result)
