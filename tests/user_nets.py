"""A network of the user's own, outside mnist_lab: what `trust=[...]` lets a checkpoint build."""

from mnist_lab.models.nets import SoftmaxRegression


class MySoftmax(SoftmaxRegression):
    """The softmax network under another name, so that its checkpoints hold the same weights."""
