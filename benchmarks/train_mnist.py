"""Training samples/s of ``cadence train mnist`` against a hand-written PyTorch loop, in one process.

    python benchmarks/train_mnist.py [--data-dir D] [--repeats 3] [--threads 1]

One training epoch over the real MNIST training digits, batch 64, timed three ways:

* ``cadence Trainer``: the experiment as ``cadence train mnist`` builds it (cadence's
  BatchNorm and Adam, the in-memory loader, the trainer, the tracker), validation off;
* ``hand loop, cadence layers``: a plain loop over the same batches with the same model
  and optimizer, which isolates the trainer's own overhead;
* ``hand loop, torch layers``: the same CNN with ``torch.nn.BatchNorm*`` and
  ``torch.optim.Adam``, the peer.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args  # noqa: E402

from cadence.data import MNIST  # noqa: E402
from cadence.experiments.mnist import BatchNormCNN, MNISTConfig, build  # noqa: E402
from cadence.optim import Adam  # noqa: E402


class TorchBatchNormCNN(nn.Module):
    """The same CNN with torch's own batch normalization."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 20, 5, bias=False), nn.BatchNorm2d(20)
        self.conv2, self.bn2 = nn.Conv2d(20, 50, 5, bias=False), nn.BatchNorm2d(50)
        self.fc1, self.bn3 = nn.Linear(800, 500, bias=False), nn.BatchNorm1d(500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(torch.relu(self.bn3(self.fc1(x.flatten(1)))))


def cadence_trainer_epoch(data_dir: Path) -> float:
    trainer = build(MNISTConfig(epochs=1), data_dir).trainer(console=False)
    trainer.valid_loader = None
    start = time.perf_counter()
    trainer.run()
    return time.perf_counter() - start


def hand_loop_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                    labels: torch.Tensor) -> float:
    start = time.perf_counter()
    model.train()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    for idx in order.split(64):
        x, y = MNIST.normalize(images[idx]), labels[idx]
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    args = parse_args(__doc__, repeats=3, data_dir=True)
    data = MNIST(args.data_dir, train=True)
    n = len(data.images)

    def cadence_layers() -> float:
        torch.manual_seed(0)
        model = BatchNormCNN()
        return hand_loop_epoch(model, Adam(model.parameters(), lr=1e-3), data.images, data.labels)

    def torch_layers() -> float:
        torch.manual_seed(0)
        model = TorchBatchNormCNN()
        return hand_loop_epoch(model, torch.optim.Adam(model.parameters(), lr=1e-3), data.images, data.labels)

    cases = {"cadence Trainer": lambda: cadence_trainer_epoch(args.data_dir),
             "hand loop, cadence layers": cadence_layers,
             "hand loop, torch layers": torch_layers}
    times = {name: [] for name in cases}
    for fn in cases.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(fn())
    peer = statistics.median(times["hand loop, torch layers"])
    table = Table("loop", "samples / s", "time x torch loop",
                  title=f"MNIST training epoch ({n} digits, batch 64), {args.threads} thread(s), median of {args.repeats}")
    for name, ts in times.items():
        t = statistics.median(ts)
        table.add_row(name, f"{n / t:,.0f}", f"{t / peer:.2f}")
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
