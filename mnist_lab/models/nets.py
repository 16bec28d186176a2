"""The tutorial's three networks as plain PyTorch modules (no Lightning here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

Init = Literal["default", "tutorial", "normal", "zeros"]
INITS = {"normal": nn.init.normal_, "zeros": nn.init.zeros_}  # applied to every weight and bias

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}

IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


class _Net(nn.Module):
    """Base for the networks: the `init` option.

    `default` keeps PyTorch's initialisation; `normal` draws every weight and bias from N(0, 1)
    (tf.random_normal), `zeros` sets them to 0 (tf.zeros); `tutorial` is what the tutorial's code
    uses for this network.
    """

    tutorial_init: ClassVar[str] = "normal"

    def _initialise(self, init: Init) -> None:
        if init not in ("default", "tutorial", *INITS):
            raise ValueError(f"init must be one of default, tutorial, normal, zeros; got {init!r}")
        if init == "tutorial":
            init = self.tutorial_init
        if init in INITS:
            for param in self.parameters():
                INITS[init](param)


class SoftmaxRegression(_Net):
    """Softmax regression: a single linear layer from 784 pixels to 10 logits."""

    tutorial_init = "zeros"  # tf.zeros, as the tutorial's code shows

    def __init__(self, init: Init = "default") -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(784, NUM_CLASSES))
        self._initialise(init)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class MLP(_Net):
    """Multi-layer perceptron, 784-256-256-10 with sigmoid units in the tutorial; `dropout`, if
    above 0, follows each hidden layer."""

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "sigmoid",
        init: Init = "default",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"model.net.dropout must lie in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = 784
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, NUM_CLASSES))
        self.layers = nn.Sequential(*layers)
        self._initialise(init)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class CNN(_Net):
    """Two 5x5 SAME conv + 2x2 max-pool blocks (32, 64 channels), fc 1024 with dropout, fc 10; with
    `norm`, batch normalisation before the ReLU of each conv and of fc 1024."""

    def __init__(
        self, dropout: float = 0.25, init: Init = "default", channels_last: bool = False, norm: bool = False
    ) -> None:
        super().__init__()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

        def normalised(layer: nn.Module, norm_layer: type[nn.Module], width: int) -> list[nn.Module]:
            # The bias of a layer followed by batch norm is cancelled by the norm's mean: left out.
            return [layer, norm_layer(width), nn.ReLU()] if norm else [layer, nn.ReLU()]

        self.features = nn.Sequential(
            *normalised(nn.Conv2d(1, 32, kernel_size=5, padding=2, bias=not norm), nn.BatchNorm2d, 32),
            nn.MaxPool2d(2),
            *normalised(nn.Conv2d(32, 64, kernel_size=5, padding=2, bias=not norm), nn.BatchNorm2d, 64),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            *normalised(nn.Linear(7 * 7 * 64, 1024, bias=not norm), nn.BatchNorm1d, 1024),
            nn.Dropout(dropout),
            nn.Linear(1024, NUM_CLASSES),
        )
        self._initialise(init)
        self.to(memory_format=self.memory_format)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x.contiguous(memory_format=self.memory_format)))
