r"""CIFAR-10 with the residual network for CIFAR of He et al. 2016.

He, Zhang, Ren & Sun, *Deep Residual Learning for Image Recognition*, CVPR 2016,
arXiv:1512.03385, section 4.2. A residual block learns a residual $\mathcal{F}$ of its input
rather than the whole mapping,

$$
y = \mathrm{ReLU}\big(\mathcal{F}(x) + \mathrm{shortcut}(x)\big), \qquad
\mathcal{F}(x) = \mathrm{BN}(W_2 * \mathrm{ReLU}(\mathrm{BN}(W_1 * x))),
$$

with $3 \times 3$ convolutions $W_1, W_2$ and batch normalization (Ioffe & Szegedy 2015;
cadence's :class:`~cadence.nn.norm.BatchNorm`) after each. The network for CIFAR's 32x32
images has $6n + 2$ weighted layers: a $3 \times 3$ convolution of 16 filters, then three
stages of $n$ blocks each on feature maps of 32x32, 16x16 and 8x8 with 16, 32 and 64
filters (the first convolution of the second and third stages has stride 2), then global
average pooling and a 10-way linear layer. ``depth`` 20, 32, 44, 56, 110 are the paper's
ResNet-20 ... ResNet-110 ($n$ = 3, 5, 7, 9, 18).

Where a block halves the feature map and doubles the filters, the shortcut is the paper's
option A, the identity on every other pixel with the new channels zero (no parameters, as
in the paper's CIFAR networks); ``model.shortcut=B`` uses a $1 \times 1$ convolution of stride 2
and a batch normalization instead. Weights are initialised as in He et al. 2015
("Delving Deep into Rectifiers").

**Training** follows section 4.2: the standard augmentation (4 pixels of zero padding on
each side, a random 32x32 crop and a random horizontal flip, applied to whole batches by
:class:`~cadence.data.RandomCrop` and :class:`~cadence.data.RandomHorizontalFlip`), per-channel
normalization, batches of 128, SGD with momentum 0.9 and weight decay $10^{-4}$ on every
weight, learning rate 0.1. The paper divides the rate by 10 at 32k and 48k iterations and
stops at 64k (164 epochs of the 50k images); here it follows half a cosine to 0 over the
run instead (Loshchilov & Hutter 2017), after ``optimizer.warmup`` steps of linear warm-up (0: none;
the paper warms ResNet-110 up at 0.01 for 400 iterations). The validation split is the
10,000 test images, reported as ``valid.accuracy`` and ``valid.loss``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cadence.checks import check_number
from cadence.data import CIFAR10, Compose, InMemoryLoader, RandomCrop, RandomHorizontalFlip
from cadence.experiments.runs import Built, RunConfig, build_trainer, prepare
from cadence.metrics import Accuracy
from cadence.nn.norm import BatchNorm
from cadence.optim import OptimizerConfig

__all__ = ["BasicBlock", "CIFAR10Config", "ModelConfig", "ResNet", "build"]

#: The shortcuts where a block changes shape: A, the padded identity; B, a projection.
SHORTCUTS = ("A", "B")


class BasicBlock(nn.Module):
    r"""$y = \mathrm{ReLU}(\mathrm{BN}(W_2 * \mathrm{ReLU}(\mathrm{BN}(W_1 * x))) + \mathrm{shortcut}(x))$.

    ``stride`` 2 halves the feature map (in $W_1$ and in the shortcut); the shortcut is the
    identity when the shape stays, else option ``shortcut`` (see the module docstring).
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = BatchNorm(channels)
        self.stride = stride
        self.pad = channels - in_channels
        self.projection = None
        if (stride != 1 or self.pad) and shortcut == "B":
            self.projection = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                            BatchNorm(channels))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """The identity; where the shape changes, option A (every ``stride``-th pixel, zero channels added) or B."""
        if self.projection is not None:
            return self.projection(x)
        if self.stride == 1 and not self.pad:
            return x
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_channels, H, W]`` to ``[B, channels, H / stride, W / stride]``."""
        residual = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(residual + self.shortcut(x))


class ResNet(nn.Module):
    """The CIFAR ResNet of ``depth = 6n + 2`` layers: conv 3x3, three stages of ``n`` blocks, pooling, linear.

    ``width`` is the filters of the first stage (16 in the paper; the others have 2x and 4x).
    """

    def __init__(self, depth: int = 20, width: int = 16, classes: int = 10, shortcut: str = "A"):
        super().__init__()
        n = blocks_per_stage(depth)
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = BatchNorm(width)
        stages, channels = [], width
        for stage, out in enumerate((width, 2 * width, 4 * width)):
            blocks = [BasicBlock(out if i else channels, out, 2 if stage and not i else 1, shortcut) for i in range(n)]
            stages.append(nn.Sequential(*blocks))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes]`` of images ``[B, 3, 32, 32]``."""
        x = self.stages(torch.relu(self.bn(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


def blocks_per_stage(depth: int) -> int:
    """``n`` of a ResNet of ``depth = 6n + 2`` layers; another depth is a ``ValueError`` naming the nearest."""
    check_number("model", "depth", depth, low=8, integer=True)
    if (depth - 2) % 6:
        lower = depth - (depth - 2) % 6
        raise ValueError(f"model.depth={depth} is not 6n + 2; expected one of 20, 32, 44, 56, 110, ... "
                         f"(nearest: {lower} or {lower + 6})")
    return (depth - 2) // 6


@dataclass
class ModelConfig:
    """The ResNet of ``cadence train cifar10``."""

    #: 6n + 2 layers: 20, 32, 44, 56, 110.
    depth: int = 20
    #: Filters of the first stage (the paper's 16; the second and third have twice and four times as many).
    width: int = 16
    #: Where a block changes shape: A (identity, zero channels added; the paper's for CIFAR) or B (projection).
    shortcut: str = "A"

    def __post_init__(self) -> None:
        blocks_per_stage(self.depth)
        check_number("model", "width", self.width, low=1, integer=True)
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"model.shortcut={self.shortcut!r}; expected one of: {', '.join(SHORTCUTS)}")


@dataclass
class CIFAR10Config(RunConfig):
    """The configuration of ``cadence train cifar10``; every field is a ``key=value`` override."""

    #: The paper's 64k iterations of 128 images: 164 epochs of the 50,000 training images.
    epochs: int = 164
    batch_size: int = 128
    valid_batch_size: int = 1000
    #: Random crops with 4 pixels of padding and horizontal flips of the training images.
    augment: bool = True
    #: Give biases and normalization weights no weight decay; the paper decays every weight.
    no_decay_on_norms_and_biases: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    #: SGD 0.1 with momentum 0.9 and weight decay 1e-4, on a cosine over the run (``optimizer.warmup``: steps of
    #: linear warm-up before it).
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="cosine"))

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("batch_size", "valid_batch_size"):
            check_number("CIFAR10Config", name, getattr(self, name), low=1, integer=True)


def build(config: CIFAR10Config, data_dir: str | Path | None = None) -> Built:
    """Load CIFAR-10 (downloaded into the data directory when missing) and build the ResNet: the experiment, ready
    to train once its run is recorded."""
    setup = prepare(config)
    train_set, valid_set = CIFAR10(data_dir, train=True), CIFAR10(data_dir, train=False)
    train_loader = InMemoryLoader(train_set.images, train_set.labels,
                                  setup.per_process("batch_size", config.batch_size), shuffle=True, seed=config.seed,
                                  drop_last=True, transform=CIFAR10.normalize,
                                  augment=Compose(RandomCrop(4), RandomHorizontalFlip()) if config.augment else None,
                                  **setup.shard)
    valid_loader = InMemoryLoader(valid_set.images, valid_set.labels,
                                  setup.per_process("valid_batch_size", config.valid_batch_size),
                                  transform=CIFAR10.normalize, **setup.shard)
    model = ResNet(config.model.depth, config.model.width, len(train_set.classes), config.model.shortcut)
    return build_trainer(setup, model, train_loader, valid_loader, loss_fn=nn.CrossEntropyLoss(),
                         metrics={"accuracy": Accuracy()})
