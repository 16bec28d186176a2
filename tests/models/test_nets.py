"""The three networks: shapes, sizes, activations and the tutorial's initialisation."""

import pytest
import torch
from torch import nn

from mnist_lab.models.nets import CNN, MLP, SoftmaxRegression


@pytest.mark.parametrize(
    ("net", "params"),
    [(SoftmaxRegression(), 7_850), (MLP(), 269_322), (CNN(), 3_274_634)],
    ids=["softmax", "mlp", "cnn"],
)
def test_each_network_maps_images_to_ten_logits_with_the_tutorials_parameter_count(net, params):
    assert net(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    assert sum(p.numel() for p in net.parameters()) == params


def test_cnn_keeps_28x28_through_same_convolutions_and_halves_it_twice():
    assert CNN().features(torch.rand(2, 1, 28, 28)).shape == (2, 64, 7, 7)


def test_mlp_is_784_256_256_10_with_sigmoid_units_by_default():
    linears = [m for m in MLP().modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 256), (256, 256), (256, 10)]
    assert sum(isinstance(m, nn.Sigmoid) for m in MLP().modules()) == 2


def test_mlp_activation_is_configurable_and_unknown_names_are_refused():
    assert sum(isinstance(m, nn.ReLU) for m in MLP(activation="relu").modules()) == 2
    with pytest.raises(ValueError, match="activation must be one of.*relu.*sigmoid"):
        MLP(activation="swishy")


@pytest.mark.parametrize("net_cls", [MLP, CNN])
def test_tutorial_init_draws_every_weight_and_bias_from_a_standard_normal(net_cls):
    torch.manual_seed(0)
    values = torch.cat([p.detach().flatten() for p in net_cls(init="tutorial").parameters()])
    assert abs(values.mean().item()) < 0.01
    assert abs(values.std().item() - 1.0) < 0.01
    # PyTorch's default init is far narrower than N(0, 1).
    default = torch.cat([p.detach().flatten() for p in net_cls().parameters()])
    assert default.std().item() < 0.2


def test_tutorial_init_of_softmax_regression_is_all_zeros():
    net = SoftmaxRegression(init="tutorial")
    assert all(torch.count_nonzero(p) == 0 for p in net.parameters())
    assert torch.equal(net(torch.rand(3, 1, 28, 28)), torch.zeros(3, 10))


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="init must be one of default, tutorial, normal, zeros"):
        CNN(init="xavier")


def test_normal_and_zeros_inits_apply_to_any_network():
    torch.manual_seed(0)
    weights = SoftmaxRegression(init="normal").layers[1].weight
    assert abs(weights.std().item() - 1.0) < 0.02
    assert all(torch.count_nonzero(p) == 0 for p in MLP(init="zeros").parameters())


def test_mlp_dropout_follows_each_hidden_layer_without_changing_its_sizes():
    net = MLP(activation="relu", dropout=0.2)
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.2]
    assert sum(p.numel() for p in net.parameters()) == 269_322
    assert not any(isinstance(m, nn.Dropout) for m in MLP().modules())
    with pytest.raises(ValueError, match=r"model.net.dropout must lie in \[0, 1\)"):
        MLP(dropout=1.0)


def test_cnn_norm_puts_batch_norm_before_each_relu_and_keeps_the_tutorials_layers():
    plain, normed = CNN(), CNN(norm=True)
    layers = [type(m).__name__ for m in normed.modules() if not isinstance(m, (nn.Sequential, CNN))]
    assert layers == [
        *("Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"),
        *("Flatten", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"),
    ]
    shapes = lambda net: [p.shape for n, p in net.named_parameters() if "weight" in n and p.dim() > 1]  # noqa: E731
    assert shapes(normed) == shapes(plain)  # conv 5x5x32, conv 5x5x64, fc 1024, fc 10
    # A bias before batch norm is cancelled by its mean: only the last layer keeps one.
    assert [n for n, _ in normed.named_parameters() if n.endswith("bias") and "." in n] == [
        "features.1.bias",
        "features.5.bias",
        "classifier.2.bias",
        "classifier.5.bias",
    ]
    assert normed(torch.rand(3, 1, 28, 28)).shape == (3, 10)
