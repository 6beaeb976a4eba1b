"""Time of cadence's BatchNorm (native and reference paths) against torch's, in one process.

    python benchmarks/batch_norm.py [--repeats 20] [--threads 1]

Two inputs: a convolutional feature map ``[64, 32, 28, 28]`` (against
``torch.nn.BatchNorm2d``) and a batch of features ``[256, 512]`` (against
``torch.nn.BatchNorm1d``). Two measurements: a training step's forward and backward
(gradients of the input and of gamma and beta), and an evaluation forward with the
running estimates under ``torch.no_grad()``. Rounds are interleaved and the median
taken after warm-up; ratios are to torch's layer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, parse_args  # noqa: E402

from cadence.nn.norm import BatchNorm  # noqa: E402

INPUTS = {"[64, 32, 28, 28]": ((64, 32, 28, 28), nn.BatchNorm2d), "[256, 512]": ((256, 512), nn.BatchNorm1d)}
PEER = "torch"


def layers(channels: int, torch_cls: type[nn.Module]) -> dict[str, nn.Module]:
    """The layers compared, each with its own parameters and running estimates."""
    return {"cadence native": BatchNorm(channels), "cadence reference": BatchNorm(channels, reference=True),
            PEER: torch_cls(channels)}


def train_step(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    """Forward and backward of ``layer`` in training mode."""
    layer.train()

    def run() -> None:
        x.grad = None
        layer.zero_grad(set_to_none=True)
        layer(x).backward(grad)
    return run


def eval_forward(layer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """Forward of ``layer`` in evaluation mode, without autograd."""
    layer.eval()

    def run() -> None:
        with torch.no_grad():
            layer(x)
    return run


def main() -> None:
    args = parse_args(__doc__, repeats=20)
    torch.manual_seed(0)
    table = Table("input", "layer", "train fwd+bwd ms", f"x {PEER}", "eval fwd ms", f"x {PEER}",
                  title=f"BatchNorm, {args.threads} thread(s), median of {args.repeats}")
    for label, (shape, torch_cls) in INPUTS.items():
        x = torch.randn(shape).requires_grad_()
        grad = torch.randn(shape)
        compared = layers(shape[1], torch_cls)
        train = interleaved_medians({name: train_step(layer, x, grad) for name, layer in compared.items()},
                                    repeats=args.repeats)
        evaluate = interleaved_medians({name: eval_forward(layer, x) for name, layer in compared.items()},
                                       repeats=args.repeats)
        for name in compared:
            table.add_row(label, name, f"{train[name] * 1e3:.2f}", f"{train[name] / train[PEER]:.2f}",
                          f"{evaluate[name] * 1e3:.2f}", f"{evaluate[name] / evaluate[PEER]:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
