"""Validation accuracy of ``cadence train mnist`` after 3 epochs with each ``model.norm``, in one process.

    python benchmarks/norm_accuracy.py [--data-dir D] [--epochs 3] [--repeats 1] [--threads 1]

The MNIST CNN (``cadence.experiments.mnist``) trained as ``cadence train mnist
model.norm=<norm> epochs=3`` builds it (Adam, lr 1e-3, batch 64) on the MNIST training digits
of the data directory (``--data-dir``, else ``CADENCE_DATA``, else the user cache), and validated
on its test digits, with its normalization layers swapped: batch, layer, group, instance,
batch_channel, none. Each of ``--repeats`` rounds trains every norm once with its own seed
(0, 1, ...); the median accuracy and epoch time are reported, against batch normalization's.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args  # noqa: E402

from cadence.experiments.mnist import NORMS, MNISTConfig, ModelConfig, build  # noqa: E402

PEER = "batch"


def train(norm: str, epochs: int, seed: int, data_dir: Path) -> tuple[float, float]:
    """The validation accuracy after ``epochs`` epochs, and the seconds per epoch (validation included)."""
    trainer = build(MNISTConfig(seed=seed, epochs=epochs, model=ModelConfig(norm=norm)), data_dir).trainer(
        console=False)
    start = time.perf_counter()
    trainer.run()
    return trainer.tracker.latest("valid.accuracy"), (time.perf_counter() - start) / epochs


def main() -> None:
    def add_arguments(parser) -> None:
        parser.add_argument("--epochs", type=int, default=3, help="training epochs of each run")

    args = parse_args(__doc__, repeats=1, add_arguments=add_arguments, data_dir=True)
    accuracy: dict[str, list[float]] = {norm: [] for norm in NORMS}
    seconds: dict[str, list[float]] = {norm: [] for norm in NORMS}
    for seed in range(args.repeats):
        for norm in NORMS:
            a, s = train(norm, args.epochs, seed, args.data_dir)
            accuracy[norm].append(a)
            seconds[norm].append(s)
    peer_accuracy, peer_seconds = statistics.median(accuracy[PEER]), statistics.median(seconds[PEER])
    table = Table("model.norm", "valid accuracy", "- batch", "s / epoch", "x batch",
                  title=f"MNIST CNN after {args.epochs} epochs, {args.threads} thread(s), median of {args.repeats}")
    for norm in NORMS:
        a, s = statistics.median(accuracy[norm]), statistics.median(seconds[norm])
        table.add_row(norm, f"{a:.4f}", f"{a - peer_accuracy:+.4f}", f"{s:.1f}", f"{s / peer_seconds:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
