"""The Hydra configs: every menu entry composes, builds, and ships inside the wheel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from mnist_lab.errors import ConfigError
from mnist_lab.models.classifier import Classifier
from mnist_lab.models.nets import CNN, MLP, SoftmaxRegression
from mnist_lab.train import instantiate_all
from mnist_lab.training.checks import check_config, check_devices

from helpers import run_process

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("model", "net_cls"), [("softmax", SoftmaxRegression), ("mlp", MLP), ("cnn", CNN)])
def test_every_model_config_builds_its_network_inside_the_classifier(compose_cfg, model, net_cls):
    cfg = compose_cfg(f"model={model}")
    classifier = instantiate(cfg.model)
    assert isinstance(classifier.net, net_cls)
    assert classifier(classifier.example_input_array).shape == (1, 10)


def test_defaults_are_the_mlp_adam_1e3_batch_100_and_the_95_percent_stop(compose_cfg):
    cfg = compose_cfg()
    assert cfg.model.net._target_ == "mnist_lab.models.nets.MLP" and cfg.model.net.activation == "sigmoid"
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 0.001
    assert cfg.data.batch_size == 100 and cfg.data.normalize is False
    stop = [c for c in instantiate_all(cfg.callbacks) if isinstance(c, EarlyStopping)]
    assert len(stop) == 1 and stop[0].monitor == "train/acc" and stop[0].stopping_threshold == 0.95


def test_sgd_optimizer_config_builds_sgd_over_the_model_parameters(compose_cfg):
    cfg = compose_cfg("optimizer=sgd", "optimizer.lr=0.05")
    optimizer = Classifier(net=cfg.model, optimizer=cfg.optimizer).configure_optimizers()["optimizer"]
    assert type(optimizer).__name__ == "SGD" and optimizer.param_groups[0]["lr"] == 0.05


def test_stop_rule_can_be_switched_off_leaving_the_checkpoints(compose_cfg):
    callbacks = instantiate_all(compose_cfg("callbacks.accuracy_stop=null").callbacks)
    assert not any(isinstance(c, EarlyStopping) for c in callbacks)
    checkpoints = {(c.monitor, c.filename) for c in callbacks if isinstance(c, ModelCheckpoint)}
    assert checkpoints == {("val/acc", "epoch_{epoch:03d}-val_acc_{val/acc:.4f}"), (None, "last")}


def test_unknown_model_fails_with_one_line_listing_the_options():
    result = run_process("model=resnet")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "error: model=resnet is not an option of python -m mnist_lab (options: cnn, mlp, softmax)"
    )


def test_the_wheel_ships_configs_and_mnist_and_trains_offline_from_any_folder(tmp_path):
    # setuptools builds in the checkout's build/ and reuses what it finds there: one left by an
    # earlier build would ship files since renamed. Build afresh, and leave no build/ behind.
    build = ROOT / "build"
    shutil.rmtree(build, ignore_errors=True)
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                str(ROOT),
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(tmp_path),
            ],
            check=True,
            capture_output=True,
            cwd=tmp_path,
        )
    finally:
        shutil.rmtree(build, ignore_errors=True)
    wheel = next(tmp_path.glob("mnist_lab-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.split("mnist_lab/conf/", 1)[1] for n in names if "mnist_lab/conf/" in n}
    in_checkout = {str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml")}
    assert shipped == in_checkout
    assert {n for n in names if n.endswith(".gz")} == {
        f"mnist_lab/data/packaged/MNIST/{split}-{kind}-idx{d}-ubyte.gz"
        for split in ("train", "t10k")
        for kind, d in (("images", 3), ("labels", 1))
    }
    assert "mnist_lab/serve/static/index.html" in names  # the serve page
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mnist-lab = mnist_lab.train:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    site = tmp_path / "site"  # a non-editable install, imported from another working folder
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_lab",
            "model=softmax",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=100",
            "trainer.enable_progress_bar=false",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        f"reading the copy packaged with mnist_lab ({site / 'mnist_lab' / 'data' / 'packaged' / 'MNIST'})"
        in result.stdout
    )
    (metrics,) = elsewhere.glob("outputs/*/*/metrics.json")
    assert json.loads(metrics.read_text())["test/acc"] > 0.8


def test_one_epoch_preset_trains_the_tutorials_cnn_once_through_the_data_with_its_choices(compose_cfg):
    cfg = compose_cfg("experiment=one_epoch")
    assert cfg.trainer.max_epochs == 1 and cfg.callbacks.accuracy_stop is None
    assert cfg.model.net._target_ == "mnist_lab.models.nets.CNN" and cfg.model.net.dropout == 0.25
    assert cfg.model.net.norm is True and cfg.model.label_smoothing == 0.1
    assert cfg.data.augment._target_ == "mnist_lab.data.augment.RandomAffine" and cfg.data.augment.degrees == 5
    assert cfg.data.batch_size == 128 and cfg.optimizer.lr == 0.008
    assert cfg.scheduler._target_.endswith("OneCycleLR") and cfg.scheduler.max_lr == cfg.optimizer.lr
    assert cfg.trainer.precision in ("bf16-mixed", "32-true")  # what the machine computes fast


def test_no_scheduler_by_default_and_the_module_gets_every_group(compose_cfg):
    cfg = compose_cfg()
    assert cfg.scheduler is None and cfg.model.scheduler is None
    assert cfg.model.optimizer == cfg.optimizer


@pytest.mark.parametrize(
    ("preset", "net", "optimizer", "lr", "init"),
    [
        ("tutorial_softmax", "SoftmaxRegression", "SGD", 0.01, "tutorial"),
        ("tutorial_mlp", "MLP", "SGD", 0.01, "tutorial"),
        ("tutorial_cnn", "CNN", "Adam", 0.001, "tutorial"),
    ],
)
def test_tutorial_presets_pin_what_the_tutorial_fixes(compose_cfg, preset, net, optimizer, lr, init):
    cfg = compose_cfg(f"experiment={preset}")
    assert cfg.model.net._target_.endswith(net) and cfg.model.net.init == init
    assert cfg.optimizer._target_.endswith(optimizer) and cfg.optimizer.lr == lr
    assert cfg.data.batch_size == 100 and cfg.data.normalize is False and cfg.scheduler is None
    assert cfg.trainer.max_epochs == 1000 and cfg.callbacks.accuracy_stop.stopping_threshold == 0.95
    assert cfg.callbacks.tutorial_log.every_n_epochs == 10
    if net == "MLP":
        assert cfg.model.net.activation == "sigmoid" and cfg.optimizer.momentum == 0.0
    if net == "CNN":
        assert cfg.model.net.dropout == 0.25
    classifier = instantiate(cfg.model)  # the preset builds
    assert type(classifier.configure_optimizers()["optimizer"]).__name__ == optimizer


@pytest.mark.parametrize("model", ["softmax", "mlp", "cnn"])
def test_best_presets_keep_the_tutorials_layers_and_train_a_fixed_schedule(compose_cfg, model):
    best, tutorial = compose_cfg(f"experiment=best_{model}"), compose_cfg(f"experiment=tutorial_{model}")
    shapes = [[tuple(p.shape) for p in instantiate(cfg.model).net.parameters()] for cfg in (best, tutorial)]
    assert shapes[0] == shapes[1]  # same layer sizes; only training and regularisation differ
    assert best.callbacks.accuracy_stop is None and best.scheduler.T_max == best.trainer.max_epochs
    assert best.trainer.max_epochs <= 30
    if model != "softmax":
        assert best.data.augment._target_ == "mnist_lab.data.augment.RandomAffine"


BAD_VALUES = {
    "optimizer.lr=-1": "optimizer.lr must be a number > 0",
    "optimizer.lr=0": "optimizer.lr must be a number > 0",
    "data.batch_size=0": "data.batch_size must be an integer >= 1",
    "callbacks.accuracy_stop.stopping_threshold=1.5": "stopping_threshold must lie in (0, 1]",
    "callbacks.accuracy_stop.stopping_threshold=0": "stopping_threshold must lie in (0, 1]",
    "trainer.max_epochs=0": "trainer.max_epochs must be an integer >= 1",
    "trainer.devices=64": "trainer.devices=64 but this machine has",
    "threads=0": "threads must be an integer >= 1",
    "model.net.activation=swish": "activation must be one of",
    "model.net.dropout=1.5": "model.net.dropout must lie in [0, 1)",
    "data.augment={_target_:mnist_lab.data.augment.RandomAffine,degrees:200}": (
        "data.augment.degrees must lie in [0, 180)"
    ),
}


@pytest.mark.parametrize("override", BAD_VALUES)
def test_a_value_out_of_range_is_refused_with_what_is_allowed(compose_cfg, override):
    cfg = compose_cfg(override)
    with pytest.raises((ConfigError, InstantiationException)) as refused:
        check_config(cfg)  # the ranges train() checks first; the rest are checked as the parts are built
        check_devices(cfg)
        instantiate(cfg.data)
        instantiate(cfg.model)
        instantiate_all(cfg.callbacks)
    error = refused.value.__cause__ if isinstance(refused.value, InstantiationException) else refused.value
    assert BAD_VALUES[override] in str(error)
