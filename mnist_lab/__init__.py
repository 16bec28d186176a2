"""mnist_lab: the classic TensorFlow MNIST tutorial's models, trained with Lightning and Hydra."""

__version__ = "0.1.0"
