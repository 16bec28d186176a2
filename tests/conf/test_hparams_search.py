"""hparams_search=optuna: the search space, a search that returns its best and resumes from its storage."""

from __future__ import annotations

import pytest
import yaml

from helpers import SWEEP_JOB, compose_config, job_metrics, run_cli

pytestmark = pytest.mark.long  # run first (tests/conftest.py)


def test_optuna_search_of_three_trials_returns_the_best_and_resumes_from_its_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    args = ["hparams_search=optuna", "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={storage}", "test=false"]
    few = [*(a for a in SWEEP_JOB if "limit_train_batches" not in a), "trainer.limit_train_batches=3"]  # CNN trials
    result = run_cli(*args, *few, f"hydra.sweep.dir={tmp_path / 'first'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    best = yaml.safe_load((tmp_path / "first" / "optimization_results.yaml").read_text())
    scores = [job_metrics(tmp_path / "first", f"{n}_cnn")["val/acc_best"] for n in range(3)]
    assert best["best_value"] == pytest.approx(max(scores))
    assert set(best["best_params"]) == {"optimizer.lr", "data.batch_size", "model.net.dropout"}
    summary = (tmp_path / "first" / "summary.md").read_text()
    assert (
        "Best parameters (optuna)" in summary and f"optimizer.lr={best['best_params']['optimizer.lr']:.4g}" in summary
    )

    again = run_cli(
        *args[:1], "hydra.sweeper.n_trials=1", *args[2:], *few, f"hydra.sweep.dir={tmp_path / 'second'}", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    import optuna

    study = optuna.load_study(study_name="mnist_lab_cnn", storage=storage)
    assert len(study.trials) == 4 and study.direction == optuna.study.StudyDirection.MAXIMIZE


def test_optuna_preset_maximises_over_learning_rate_batch_size_and_dropout():
    cfg = compose_config("train", "hparams_search=optuna", return_hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == {"optimizer.lr", "data.batch_size", "model.net.dropout"}
    assert cfg.model.net._target_ == "mnist_lab.models.nets.CNN" and cfg.callbacks.accuracy_stop is None
    assert "storage" in sweeper
