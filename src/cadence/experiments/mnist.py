"""MNIST with the batch-norm CNN of labml_nn's batch normalization experiment.

Two conv–BatchNorm–ReLU–max-pool blocks, a linear–BatchNorm–ReLU layer and a linear
classifier (no biases before the normalizations, whose shift makes them redundant),
trained with cadence's Adam on the in-memory MNIST loader. ``model.norm`` swaps the
batch normalizations for another of :mod:`cadence.nn.norm`, or for none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from cadence.checks import check_number
from cadence.data import MNIST, InMemoryLoader
from cadence.experiments.runs import Built, RunConfig, build_trainer, prepare
from cadence.metrics import Accuracy
from cadence.nn.norm import BatchChannelNorm, BatchNorm, GroupNorm, InstanceNorm, LayerNorm
from cadence.optim import OptimizerConfig

#: Channel groups of the group and batch-channel normalizations (it divides 20, 50 and 500).
GROUPS = 5

#: The normalizations ``model.norm`` names: each makes the layer for ``C`` channels of a sample of ``shape``
#: (``[C, H, W]`` after a convolution, ``[C]`` after the linear layer), or None where it does not apply.
NORMS: dict[str, Callable[[int, tuple[int, ...]], nn.Module | None]] = {
    "batch": lambda C, shape: BatchNorm(C),
    # Over all the units of a layer, as the paper defines it: [C, H, W] for a feature map.
    "layer": lambda C, shape: LayerNorm(shape),
    "group": lambda C, shape: GroupNorm(GROUPS, C),
    # Each channel of each sample over its positions: the linear layer's features have none.
    "instance": lambda C, shape: InstanceNorm(C) if len(shape) > 1 else None,
    "batch_channel": lambda C, shape: BatchChannelNorm(C, GROUPS),
    "none": lambda C, shape: None,
}


def check_norm(norm: str) -> str:
    """``norm`` if :data:`NORMS` has it, else a ``ValueError`` listing the names."""
    if norm not in NORMS:
        raise ValueError(f"model.norm={norm!r} is not a known normalization; expected one of: {', '.join(NORMS)}")
    return norm


class BatchNormCNN(nn.Module):
    """conv 1→20 k5, BN, ReLU, pool 2; conv 20→50 k5, BN, ReLU, pool 2; linear 800→500, BN, ReLU; linear 500→10.

    ``norm`` names the normalization in place of BN (see :data:`NORMS`); where there is none,
    the layer before it has a bias.
    """

    def __init__(self, norm: str = "batch") -> None:
        super().__init__()
        make = NORMS[check_norm(norm)]
        norm1, norm2, norm3 = make(20, (20, 24, 24)), make(50, (50, 8, 8)), make(500, (500,))
        self.conv1 = nn.Conv2d(1, 20, 5, bias=norm1 is None)
        self.bn1 = nn.Identity() if norm1 is None else norm1
        self.conv2 = nn.Conv2d(20, 50, 5, bias=norm2 is None)
        self.bn2 = nn.Identity() if norm2 is None else norm2
        self.fc1 = nn.Linear(4 * 4 * 50, 500, bias=norm3 is None)
        self.bn3 = nn.Identity() if norm3 is None else norm3
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 10]`` of images ``[B, 1, 28, 28]``."""
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        x = torch.relu(self.bn3(self.fc1(x.flatten(1))))
        return self.fc2(x)


@dataclass
class ModelConfig:
    """The CNN of ``cadence train mnist``."""

    #: The normalization after each hidden layer: batch, layer, group, instance, batch_channel or none.
    norm: str = "batch"

    def __post_init__(self) -> None:
        check_norm(self.norm)


@dataclass
class MNISTConfig(RunConfig):
    """The configuration of ``cadence train mnist``; every field is a ``key=value`` override."""

    batch_size: int = 64
    #: Batches of validation (no gradients): as large as is convenient.
    valid_batch_size: int = 1000
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", lr=1e-3))

    #: ``optimizer.name=sgd`` brings the recipe that reaches 99% in 5 epochs, as Adam's defaults do: Nesterov
    #: momentum 0.9, learning rate 0.05 on a cosine over the run, L2 weight decay 5e-4. Any of them given on the
    #: command line wins.
    RECIPES: ClassVar[dict[str, tuple[str, ...]]] = {
        "optimizer.name=sgd": ("optimizer.lr=0.05", "optimizer.momentum=0.9", "optimizer.nesterov=true",
                               "optimizer.weight_decay=5e-4", "optimizer.schedule=cosine"),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("batch_size", "valid_batch_size"):
            check_number("MNISTConfig", name, getattr(self, name), low=1, integer=True)


def build(config: MNISTConfig, data_dir: str | Path | None = None) -> Built:
    """Load the data and build the model: the experiment, ready to train once its run is recorded.

    In a data parallel run (``cadence train mnist --nproc 2``, or ``torchrun``) each process
    reads its part of every global batch; its batch normalization normalizes by its own part, as
    torch's layers do under ``DistributedDataParallel``.
    """
    setup = prepare(config)
    train_set, valid_set = MNIST(data_dir, train=True), MNIST(data_dir, train=False)
    train_loader = InMemoryLoader(train_set.images, train_set.labels,
                                  setup.per_process("batch_size", config.batch_size), shuffle=True, seed=config.seed,
                                  transform=MNIST.normalize, **setup.shard)
    valid_loader = InMemoryLoader(valid_set.images, valid_set.labels,
                                  setup.per_process("valid_batch_size", config.valid_batch_size),
                                  transform=MNIST.normalize, **setup.shard)
    return build_trainer(setup, BatchNormCNN(config.model.norm), train_loader, valid_loader,
                         loss_fn=nn.CrossEntropyLoss(), metrics={"accuracy": Accuracy()})
