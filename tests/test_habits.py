"""What a Lightning and Hydra user reaches for: help, suggestions, loggers, debug presets, scripts."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from mnist_lab.data.datamodule import MNISTDataModule

from helpers import QUIET, one_error_line, run_cli, run_process

SMALL = ["trainer.accelerator=cpu", "model=softmax", *QUIET]


@pytest.fixture(scope="module")
def seven(tmp_path_factory) -> Path:
    """The first official test digit (a 7), drawn dark on white at 140x140 like a user's scan."""
    dm = MNISTDataModule(download=False)
    dm.setup()
    assert dm.data_test.tensors[1][0] == 7
    pixels = (255 - dm.data_test.tensors[0][0, 0].numpy() * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("digits") / "seven.png"
    Image.fromarray(pixels).resize((140, 140)).save(path)
    return path


def test_predict_takes_one_image_path_without_brackets(mlp_run, seven, tmp_path):
    run_dir, _ = mlp_run
    result = run_cli(
        f"ckpt_path={run_dir}", f"images={seven}", f"hydra.run.dir={tmp_path / 'p'}", module="mnist_lab.predict"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{seven}: 7" in result.stdout
    assert json.loads((tmp_path / "p" / "predictions.json").read_text())["predictions"][0]["image"] == str(seven)


def test_onnx_export_is_one_file_that_runs_alone(mlp_run, tmp_path):
    run_dir, metrics = mlp_run
    out = tmp_path / "export" / "model.onnx"
    result = run_cli(
        f"ckpt_path={run_dir}",
        "format=onnx",
        f"out={out}",
        f"hydra.run.dir={tmp_path / 'e'}",
        module="mnist_lab.export",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]  # no model.onnx.data beside it
    alone = tmp_path / "elsewhere" / "model.onnx"
    alone.parent.mkdir()
    shutil.move(out, alone)
    dm = MNISTDataModule(download=False)
    dm.setup()
    x, y = dm.data_test.tensors
    session = onnxruntime.InferenceSession(str(alone), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"images": x[:1000].numpy()})[0]
    assert (logits.argmax(1) == y[:1000].numpy()).mean() > 0.85


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


@pytest.mark.parametrize(
    "module", ["mnist_lab", "mnist_lab.predict", "mnist_lab.evaluate", "mnist_lab.export", "mnist_lab.serve"]
)
def test_help_says_what_each_command_does_with_its_own_options_and_two_examples(module):
    result = run_process("--help", module=module)
    assert result.returncode == 0
    assert result.stdout.startswith(f"python -m {module}:")
    assert result.stdout.count(f"python -m {module} ") >= 2  # the examples
    assert "ckpt_path" in result.stdout if module != "mnist_lab" else "resume=" in result.stdout
    if module != "mnist_lab":
        assert "optimizer" not in result.stdout and "trainer" not in result.stdout  # training's groups


def test_console_scripts_match_the_modules():
    bin_dir = Path(sys.executable).parent
    for name in ("predict", "evaluate", "export", "serve", "report"):
        assert (bin_dir / f"mnist-lab-{name}").is_file(), f"mnist-lab-{name}"
    import subprocess

    via_script = subprocess.run([str(bin_dir / "mnist-lab-predict"), "--help"], capture_output=True, text=True)
    assert via_script.stdout == run_process("--help", module="mnist_lab.predict").stdout


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


def test_resume_latest_continues_the_newest_run(tmp_path):
    first = run_cli(*SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=5", "test=false", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (run,) = [p.parent for p in tmp_path.glob("outputs/*/*/metrics.json")]
    resumed = run_cli("resume=latest", "trainer.max_epochs=2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2
    assert len(list(tmp_path.glob("outputs/*/*/metrics.json"))) == 1  # the same folder, no new one
    assert "resume=latest found no training run" in one_error_line(run_cli("resume=latest", cwd=tmp_path / "outputs"))


def test_a_command_that_fails_before_training_leaves_no_folder(tmp_path):
    for args in (
        ["trainer.max_epochs=0"],
        ["data=fashion_mnist", f"data.root={tmp_path / 'none'}", "data.download=false"],
    ):
        assert run_cli(*args, cwd=tmp_path).returncode == 1
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "none").exists()
