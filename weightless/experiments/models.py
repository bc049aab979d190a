"""The paper's two MNIST models, as nn.Sequential with named layers (`weightless.torch` re-exports
them under their old names, lenet_300_100 and lenet_5)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


def lenet_300_100() -> nn.Sequential:
    """LeNet-300-100 (784-300-100-10, ReLU), the paper's first MNIST model; input (N, 784)."""
    return nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(784, 300)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(300, 100)), ("relu2", nn.ReLU()),
        ("fc3", nn.Linear(100, 10)),
    ]))


def lenet_5() -> nn.Sequential:
    """Caffe's LeNet-5 (conv 20 and 50 of 5x5, max-pool, FC 800-500-10), the paper's second model.

    Input (N, 784) like LeNet-300-100, reshaped to 1x28x28 inside, so both share one data path.
    fc1 (500 x 800) is the paper's FC-0.
    """
    return nn.Sequential(OrderedDict([
        ("image", nn.Unflatten(1, (1, 28, 28))),
        ("conv1", nn.Conv2d(1, 20, 5)), ("pool1", nn.MaxPool2d(2)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(20, 50, 5)), ("pool2", nn.MaxPool2d(2)), ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(800, 500)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(500, 10)),
    ]))
