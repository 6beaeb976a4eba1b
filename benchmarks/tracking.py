"""Tracking overhead: a tiny-MLP training loop recording 10 scalars a step, against the same loop with tracking off.

    python benchmarks/tracking.py [--repeats 24] [--threads 1] [--steps 1000]

Every case runs the same loop for ``--steps`` optimizer steps: an MLP 784-128-10 (ReLU) on a
batch of 64 random inputs, cross-entropy, Adam; each step computes the loss and the batch
accuracy (0-d tensors) and builds the same 10 values: the loss, the accuracy, four more 0-d
tensors, and four Python floats (learning rate, samples, epoch, step). Two groups of cases, each timed against its own ``tracking off``:

* the store: ``tracking off``, the loop dropping the values (the peer); ``tracking off, again``,
  the same loop timed as a case of its own (its ratio is the noise of the measurement);
  ``tracker, no sink``, ``Tracker()`` keeping the values (``add``, the kinds, the moving
  average of ``train.loss``, resolved on its background thread); ``tracker, no sink, every add
  checked``, the same with every call's keys and values checked in full as ``add`` checks a
  call's first sight of its keys (what the row path, which checks repeated keys a column at a
  time on the background thread, saves); ``tracker -> SQLite store``, a run in a
  :class:`~cadence.track.RunStore` written by the background thread, with the tracker's
  defaults (a hand-over every 10,000 values or 2 s);
* the opt-in extras: the store and TensorBoard event files (``tensorboard_dir=True``), and the
  same with the console's :class:`~cadence.track.PhaseDisplay` writing plain lines (to memory). They are timed apart: interleaved
  with them, the store's case measured up to 1.05x, where timed apart it measures 1.01-1.02x
  (TensorBoard's writer, in Python, churns through objects and memory between the cases).

Each timed block ends with ``tracker.flush()``, which waits until the block's values are
written: the writing is counted in full, not left to overlap with the next case. Each block
is timed twice: by the wall clock, and by the CPU time of this process (every thread: the
writer's work counts). On a machine shared with other jobs the wall clock also counts the
time they take from this process; the CPU time does not, and is the steadier figure there.
The figures are medians over ``--repeats`` interleaved blocks after two warm-up blocks, in
one process; each round starts with the next case, so that every case runs in every place of
the order. Target: recording to the store at most 1.02x the loop with tracking off.
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, setting  # noqa: E402

from cadence.track import PhaseDisplay, RunStore, Tracker  # noqa: E402

BATCH = 64


def make_loop(steps: int, tracker: Tracker | None, console: bool = False,
              full_check: bool = False) -> Callable[[], None]:
    """A block of ``steps`` training steps of a fresh tiny MLP, adding its 10 values to ``tracker`` (or not), shown
    on a console (to memory) with ``console``, every call's values checked in full first with ``full_check``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(BATCH, 784), torch.randint(0, 10, (BATCH,))
    if tracker is not None:
        tracker.declare("train.loss", "moving")
    state = {"step": 0}
    display = PhaseDisplay(tracker, Console(file=io.StringIO(), width=200), live=False) if console else None

    def block() -> None:
        if display is not None:
            display.start_phase("train", total=steps)
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
            if full_check:
                tracker._check(step, values, None)
            if tracker is not None:
                tracker.add(step, values)
            if display is not None:
                display.advance()
        if display is not None:
            display.end_phase()
        if tracker is not None:
            tracker.flush()

    return block


def main() -> None:
    args = parse_args(__doc__, repeats=24, add_arguments=lambda p: p.add_argument(
        "--steps", type=int, default=1000, help="optimizer steps per timed block"))
    with tempfile.TemporaryDirectory() as folder, RunStore(folder) as store:
        def recorded(**options) -> Tracker:
            return Tracker(store, store.create_run("benchmark", {}, provenance={}), **options)

        groups = {
            "the store (the target: at most 1.02x)": {
                "tracking off": None,
                "tracking off, again": None,
                "tracker, no sink": Tracker(),
                "tracker, no sink, every add checked": Tracker(),
                "tracker -> SQLite store": recorded(),
            },
            "the opt-in extras": {
                "tracking off": None,
                "tracker -> store + TensorBoard": recorded(tensorboard_dir=True),
                "tracker -> store + TensorBoard + console": recorded(tensorboard_dir=True),
            },
        }
        for title, trackers in groups.items():
            cases = {name: make_loop(args.steps, tracker, console="console" in name, full_check="checked" in name)
                     for name, tracker in trackers.items()}
            wall, cpu = interleaved_wall_and_cpu(cases, args.repeats, warmup=2)
            for tracker in trackers.values():
                if tracker is not None:
                    tracker.close()
            table = Table("loop", "CPU us/step", "x off", "wall us/step", "x off",
                          title=f"tiny-MLP training, 10 scalars a step: {title}; {args.steps} steps a block, "
                                f"{setting(args)}")
            for name in cases:
                table.add_row(name, *(cell for times in (cpu, wall) for cell in (
                    f"{1e6 * times[name] / args.steps:.1f}", f"{times[name] / times['tracking off']:.3f}")))
            Console().print(table)


def interleaved_wall_and_cpu(cases: dict[str, Callable[[], None]], repeats: int,
                             warmup: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds per call of each case by the wall clock and by this process's CPU time, the cases
    interleaved after ``warmup`` calls of each (as ``common.interleaved_medians`` does, with both clocks,
    and a rotating order)."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for round in range(repeats):
        # Each round starts one case further on: every case takes every place in the order alike (the
        # case run right after the loops without tracking measured up to 3% slower than the others).
        for name in names[round % len(names):] + names[:round % len(names)]:
            fn = cases[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return ({name: statistics.median(t) for name, t in wall.items()},
            {name: statistics.median(t) for name, t in cpu.items()})


if __name__ == "__main__":
    sys.exit(main())
