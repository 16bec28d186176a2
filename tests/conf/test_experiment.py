"""The presets (conf/experiment/): one_epoch, serve, the tutorial's runs, the best runs, each pinning what it says."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf


def test_one_epoch_preset_trains_the_tutorials_cnn_once_through_the_data_with_its_choices(compose_cfg):
    cfg = compose_cfg("experiment=one_epoch")
    assert cfg.trainer.max_epochs == 1 and cfg.callbacks.accuracy_stop is None
    assert cfg.model.net._target_ == "mnist_lab.models.nets.CNN" and cfg.model.net.dropout == 0.25
    assert cfg.model.net.norm is True and cfg.model.label_smoothing == 0.1
    steps = instantiate(cfg.data.augment).steps  # the variations real digits show, chosen on real_digits' dev sets
    assert [type(s).__name__ for s in steps.values()] == ["RandomAffine", "StrokeWidth", "Blur", "Contrast"]
    assert cfg.data.batch_size == 128 and cfg.optimizer.lr == 0.008
    assert cfg.scheduler._target_.endswith("OneCycleLR") and cfg.scheduler.max_lr == cfg.optimizer.lr
    assert cfg.trainer.precision in ("bf16-mixed", "32-true")  # what the machine computes fast


def test_serve_preset_is_one_epochs_recipe_three_times_through_the_data(compose_cfg):
    one_epoch = OmegaConf.to_container(compose_cfg("experiment=one_epoch"))
    serve = OmegaConf.to_container(compose_cfg("experiment=serve"))
    assert one_epoch["trainer"].pop("max_epochs") == 1 and serve["trainer"].pop("max_epochs") == 3
    assert serve == one_epoch


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
