"""What the experiment loggers get: TensorBoard's HPARAMS tab, CSV beside TensorBoard, MLflow's local store."""

from __future__ import annotations

from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from helpers import QUIET, run_cli

SMALL = ["trainer.accelerator=cpu", "model=softmax", *QUIET]


def test_tensorboard_hparams_tab_holds_the_config_with_its_results(tmp_path):
    result = run_cli(
        *SMALL,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=30",
        "optimizer.lr=0.002",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["val/acc_best", "test/acc"]
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["optimizer/lr"].number_value == 0.002
    assert session.hparams["model/net/_target_"].string_value == "mnist_lab.models.nets.SoftmaxRegression"
    assert events.Scalars("test/acc")  # the value the tab shows


def test_runs_log_no_weights_only_warning_and_csv_logs_beside_tensorboard(tmp_path):
    result = run_cli(
        *SMALL,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=10",
        "logger=[tensorboard,csv]",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "`weights_only` was not set" not in result.stdout + result.stderr
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"epoch", "step", "train/acc", "val/acc", "test/acc", "val/acc_best"} <= set(header)
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert OmegaConf.load(tmp_path / "csv" / "hparams.yaml").optimizer.lr == 0.001


def test_mlflow_keeps_every_run_in_a_local_sqlite_store(tmp_path):
    for seed in (1, 2):
        result = run_cli(
            *SMALL,
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=10",
            "logger=mlflow",
            f"seed={seed}",
            f"hydra.run.dir={tmp_path / str(seed)}",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-2000:]
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["mnist_lab"])
    assert len(runs) == 2 and sorted(runs["params.seed"]) == ["1", "2"]
    assert (runs["metrics.test/acc"] > 0.5).all() and runs["metrics.val/acc_best"].notna().all()
