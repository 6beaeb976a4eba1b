"""Time of cadence's normalization layers against PyTorch's, in one process.

    python benchmarks/norm.py [--repeats 20] [--threads 1] [--allocator steady|default]

Two measurements per layer and input: a training step's forward and backward
(gradients of the inputs and of the parameters), and an evaluation forward under
``torch.no_grad()``. Rounds are interleaved and the median taken after warm-up, with
glibc's malloc keeping freed memory (``steady``): with its default trimming the same layer
measured anywhere from 0.7x to 1.3x torch's, depending on what the previous calls freed.

* Layers with a torch counterpart (native and reference paths), as a ratio to the torch
  layer: ``BatchNorm``, ``LayerNorm``, ``RMSNorm``, ``GroupNorm`` on ``[64, 32, 28, 28]``
  and ``[256, 512]``, ``LayerNorm`` and ``RMSNorm`` on ``[32, 128, 512]`` too, and
  ``InstanceNorm`` on ``[64, 32, 28, 28]`` (a ``[256, 512]`` input has no spatial
  positions to normalize over). Target: <= 1.2 for the native path.
* Layers without one, as a ratio to torch's ``BatchNorm1d/2d`` on the same input:
  ``BatchChannelNorm`` (estimated batch statistics, and ordinary ones: ``BCN
  estimate=False``) and ``DeepNorm`` (whose time includes its residual sum). Target: <= 2.
* The weight-standardized ``Conv2d`` (3x3, 32 -> 32 channels), as a ratio to
  ``torch.nn.Conv2d``: the cost of standardizing its weight at every call.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, parse_args, setting  # noqa: E402

from cadence.nn import norm  # noqa: E402

PEER = "torch"
IMAGES, FEATURES, SEQUENCES = (64, 32, 28, 28), (256, 512), (32, 128, 512)


def batch_norm_peer(shape: Sequence[int]) -> nn.Module:
    """torch's batch normalization for an input of ``shape``."""
    return nn.BatchNorm2d(shape[1]) if len(shape) == 4 else nn.BatchNorm1d(shape[1])


def with_counterpart() -> list[tuple[str, Sequence[int], Callable[[bool], nn.Module], nn.Module]]:
    """(layer, input shape, cadence layer of ``reference``, torch layer) of every layer torch has too."""
    cases = []
    for shape in (IMAGES, FEATURES):
        C = shape[1]
        cases += [("BatchNorm", shape, lambda r, C=C: norm.BatchNorm(C, reference=r), batch_norm_peer(shape)),
                  ("GroupNorm", shape, lambda r, C=C: norm.GroupNorm(8, C, reference=r), nn.GroupNorm(8, C))]
    for shape in (IMAGES, FEATURES, SEQUENCES):
        S = shape[-1] if shape != IMAGES else shape[1:]
        cases += [("LayerNorm", shape, lambda r, S=S: norm.LayerNorm(S, reference=r), nn.LayerNorm(S)),
                  ("RMSNorm", shape, lambda r, S=S: norm.RMSNorm(S, reference=r), nn.RMSNorm(S))]
    cases.append(("InstanceNorm", IMAGES, lambda r: norm.InstanceNorm(32, reference=r),
                  nn.InstanceNorm2d(32, affine=True)))
    return cases


class DeepNormOfOne(nn.Module):
    """``DeepNorm(x, gx)`` as a layer of one input: ``gx`` is a fixed second input that needs gradients too."""

    def __init__(self, layer: norm.DeepNorm, shape: Sequence[int]):
        super().__init__()
        self.layer, self.gx = layer, nn.Parameter(torch.randn(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x, self.gx)


def without_counterpart() -> list[tuple[str, Sequence[int], Callable[[bool], nn.Module], nn.Module]]:
    """(layer, input shape, cadence layer of ``reference``, torch's batch norm on that input)."""
    cases = []
    for shape in (IMAGES, FEATURES):
        C = shape[1]
        cases += [("BatchChannelNorm", shape, lambda r, C=C: norm.BatchChannelNorm(C, 8, reference=r),
                   batch_norm_peer(shape)),
                  ("BCN estimate=False", shape,
                   lambda r, C=C: norm.BatchChannelNorm(C, 8, estimate=False, reference=r), batch_norm_peer(shape))]
    for shape in (FEATURES, SEQUENCES):
        cases.append(("DeepNorm", shape,
                      lambda r, shape=shape: DeepNormOfOne(norm.DeepNorm(2.0, shape[-1], reference=r), shape),
                      batch_norm_peer(shape)))
    return cases


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


def time_layers(layers: dict[str, nn.Module], shape: Sequence[int], repeats: int
                ) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds of a training step and of an evaluation forward of each layer on one input."""
    x = torch.randn(shape).requires_grad_()
    grad = torch.randn(shape)
    train = interleaved_medians({name: train_step(layer, x, grad) for name, layer in layers.items()},
                                repeats=repeats)
    evaluate = interleaved_medians({name: eval_forward(layer, x) for name, layer in layers.items()}, repeats=repeats)
    return train, evaluate


def table(title: str, peer: str, cases, repeats: int) -> Table:
    """A row per cadence path of every case, its times and their ratios to the case's peer."""
    out = Table("layer", "input", "path", "train ms", "x", "eval ms", "x", title=f"{title}; x: ratio to {peer}")
    for name, shape, make, peer_layer in cases:
        layers = {"native": make(False), "reference": make(True), PEER: peer_layer}
        train, evaluate = time_layers(layers, shape, repeats)
        for path in layers:
            out.add_row(name, str(list(shape)), path if path != PEER else peer, f"{train[path] * 1e3:.2f}",
                        f"{train[path] / train[PEER]:.2f}", f"{evaluate[path] * 1e3:.2f}",
                        f"{evaluate[path] / evaluate[PEER]:.2f}")
        out.add_section()
    return out


def conv_table(repeats: int) -> Table:
    """The weight-standardized ``Conv2d`` against ``torch.nn.Conv2d`` of the same shape."""
    layers = {"cadence Conv2d": norm.Conv2d(32, 32, 3, padding=1), PEER: nn.Conv2d(32, 32, 3, padding=1)}
    train, evaluate = time_layers(layers, IMAGES, repeats)
    out = Table("layer", "input", "train ms", "x", "eval ms", "x",
                title="Weight standardization, Conv2d 32 -> 32 3x3; x: ratio to torch Conv2d")
    for name in layers:
        out.add_row(name, str(list(IMAGES)), f"{train[name] * 1e3:.2f}", f"{train[name] / train[PEER]:.2f}",
                    f"{evaluate[name] * 1e3:.2f}", f"{evaluate[name] / evaluate[PEER]:.2f}")
    return out


def main() -> None:
    args = parse_args(__doc__, repeats=20)
    torch.manual_seed(0)
    timing = f"{setting(args)}; train: forward+backward, eval: forward"
    console = Console()
    console.print(table(f"Layers with a torch counterpart, {timing}", "torch", with_counterpart(), args.repeats))
    console.print(table(f"Layers without a torch counterpart, {timing}", "torch BatchNorm", without_counterpart(),
                        args.repeats))
    console.print(conv_table(args.repeats))


if __name__ == "__main__":
    main()
