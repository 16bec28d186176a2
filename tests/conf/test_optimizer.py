"""The optimizer menu (conf/optimizer/)."""

from __future__ import annotations

from mnist_lab.models.classifier import Classifier


def test_sgd_optimizer_config_builds_sgd_over_the_model_parameters(compose_cfg):
    cfg = compose_cfg("optimizer=sgd", "optimizer.lr=0.05")
    optimizer = Classifier(net=cfg.model, optimizer=cfg.optimizer).configure_optimizers()["optimizer"]
    assert type(optimizer).__name__ == "SGD" and optimizer.param_groups[0]["lr"] == 0.05
