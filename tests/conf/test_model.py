"""The model menu (conf/model/): every entry builds its network inside the Classifier; an unknown one is one line."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from mnist_lab.models.nets import CNN, MLP, SoftmaxRegression

from helpers import run_process


@pytest.mark.parametrize(("model", "net_cls"), [("softmax", SoftmaxRegression), ("mlp", MLP), ("cnn", CNN)])
def test_every_model_config_builds_its_network_inside_the_classifier(compose_cfg, model, net_cls):
    cfg = compose_cfg(f"model={model}")
    classifier = instantiate(cfg.model)
    assert isinstance(classifier.net, net_cls)
    assert classifier(classifier.example_input_array).shape == (1, 10)


def test_unknown_model_fails_with_one_line_listing_the_options():
    result = run_process("model=resnet")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "error: model=resnet is not an option of python -m mnist_lab (options: cnn, mlp, softmax)"
    )
