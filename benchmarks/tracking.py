"""Tracking overhead: a tiny-MLP training loop recording 10 scalars a step, against the same loop with tracking off.

    python benchmarks/tracking.py [--repeats 21] [--threads 1] [--steps 500]

Every case runs the same loop for ``--steps`` optimizer steps: an MLP 784-128-10 (ReLU) on a
batch of 64 random inputs, cross-entropy, Adam; each step computes the loss and the batch
accuracy (0-d tensors) and builds the same 10 values: the loss, the accuracy, four more 0-d
tensors, and four Python floats (learning rate, samples, epoch, step). Cases:

* ``tracking off``: the loop drops the values (the peer), and ``tracking off, again``, the same
  loop timed as a case of its own: its ratio is the noise of the measurement;
* ``tracker, no sink``: ``Tracker(console=False)`` keeps them (``add`` alone, the kinds, the
  moving average of ``train.loss``);
* ``tracker -> SQLite store``: a run in a :class:`~cadence.track.RunStore`, written by the
  background thread, with the tracker's defaults (a hand-over every 10,000 values or 2 s);
* ``tracker -> store + TensorBoard``: the same and TensorBoard event files (``tensorboard_dir=True``);
* ``... + console``: the same and a console sink writing plain lines (to memory).

Each timed block ends with ``tracker.flush()``, which waits until the block's values are on
disk: the writing is counted in full, not left to overlap with the next case. The figure is
the median over ``--repeats`` interleaved blocks after two warm-up blocks, in one process.
Target: every tracking case at most 1.02x the loop with tracking off.
"""

from __future__ import annotations

import io
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, parse_args, setting  # noqa: E402

from cadence.track import ConsoleSink, RunStore, Tracker  # noqa: E402

BATCH = 64


def make_loop(steps: int, tracker: Tracker | None) -> Callable[[], None]:
    """A block of ``steps`` training steps of a fresh tiny MLP, adding its 10 values to ``tracker`` (or not)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(BATCH, 784), torch.randint(0, 10, (BATCH,))
    if tracker is not None:
        tracker.declare("train.loss", "moving")
    state = {"step": 0}

    def block() -> None:
        for _ in range(steps):
            output = model(x)
            loss = nn.functional.cross_entropy(output, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            state["step"] += 1
            step = state["step"]
            detached = loss.detach()
            accuracy = (output.detach().argmax(-1) == y).float().mean()
            values = {"train.loss": detached, "train.accuracy": accuracy, "train.a": detached, "train.b": accuracy,
                      "train.c": detached, "train.d": accuracy, "train.lr": 1e-3, "train.samples": float(BATCH * step),
                      "train.epoch": float(step // 1000), "train.step": float(step)}
            if tracker is not None:
                tracker.add(step, values)
        if tracker is not None:
            tracker.flush()

    return block


def main() -> None:
    args = parse_args(__doc__, repeats=21, add_arguments=lambda p: p.add_argument(
        "--steps", type=int, default=500, help="optimizer steps per timed block"))
    with tempfile.TemporaryDirectory() as folder, RunStore(folder) as store:
        def recorded(**options) -> Tracker:
            return Tracker(store, store.create_run("benchmark", {}, provenance={}), smoothing=20, **options)

        console = ConsoleSink(Console(file=io.StringIO(), width=200), live=False, interval=10.0)
        trackers = {
            "tracking off": None,
            "tracking off, again": None,
            "tracker, no sink": Tracker(console=False),
            "tracker -> SQLite store": recorded(console=False, tensorboard_dir=False),
            "tracker -> store + TensorBoard": recorded(console=False, tensorboard_dir=True),
            "tracker -> store + TensorBoard + console": recorded(console=console, tensorboard_dir=True),
        }
        cases = {name: make_loop(args.steps, tracker) for name, tracker in trackers.items()}
        times = interleaved_medians(cases, args.repeats, warmup=2)
        for tracker in trackers.values():
            if tracker is not None:
                tracker.close()
    peer = times["tracking off"]
    table = Table("loop", "us / step", "x tracking off", "tracking us / step",
                  title=f"tiny-MLP training, 10 scalars a step, {args.steps} steps a block, {setting(args)}")
    for name, t in times.items():
        table.add_row(name, f"{1e6 * t / args.steps:.1f}", f"{t / peer:.3f}", f"{1e6 * (t - peer) / args.steps:+.2f}")
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
