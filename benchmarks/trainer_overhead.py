"""Per-step overhead of cadence's Trainer against a raw PyTorch loop and PyTorch Lightning, in one process.

    pip install -c constraints.txt -e '.[bench]'       # Lightning, the peer (benchmark-only)
    python benchmarks/trainer_overhead.py [--repeats 7] [--threads 1]

The work, the same for all three: a tiny MLP (32 -> 64 -> 10) trained with
``torch.optim.Adam`` on batches of 64 held in memory (the same list of batches for each),
the loss of every step recorded:

* ``raw loop``: forward, loss, backward, step, zero_grad, and the step's loss kept (the
  least a loop that tracks its loss does);
* ``raw loop + cadence's work``: the raw loop doing by hand the per-step work cadence's
  trainer does by default: the non-finite check (``nonfinite="raise"``) kept on the device (a
  flag per gradient and for the loss, the step's flag and a count; every gradient masked when
  it is set, as torch's Adam does not read such a flag itself) and read back every 20 steps,
  and handing the loss, the learning rate and the sample count to a tracker writing to a run
  store. What the trainer costs beyond this row is its own machinery (hooks, signal-safe
  stops, accumulation windows, per-phase losses);
* ``cadence Trainer``: ``Trainer(...).run()`` with its defaults (progress on the console,
  non-finite check, where the time goes) and a tracker writing every step's loss to a SQLite run store;
* ``cadence Trainer, untimed``: the same with the per-batch marks of its clock
  (:class:`~cadence.train.phase_clock.PhaseClock`) made no-ops: the difference is what timing costs;
* ``Lightning Trainer``: a ``LightningModule`` whose ``training_step`` logs its loss at
  every step (``log_every_n_steps=1``, CSV logger), checkpointing, progress bar and model
  summary off.

Each trainer also costs a fixed set-up (Lightning's is large), which is not per-step
overhead, so every case runs 1,000 and 2,000 steps: the per-step time is the difference of
the two divided by 1,000, and the overhead is that against the raw loop's.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, parse_args, setting  # noqa: E402

from cadence.track import RunContext, RunStore, Tracker  # noqa: E402
from cadence.train import Trainer  # noqa: E402
from cadence.train.phase_clock import PhaseClock  # noqa: E402

STEPS = (1000, 2000)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))


def batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(64, 32, generator=g), torch.randint(0, 10, (64,), generator=g)) for _ in range(n)]


class Batches:
    """A list of batches as one loader (Lightning reads a bare list as a collection of loaders)."""

    def __init__(self, data: list) -> None:
        self.data = data

    def __iter__(self):
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def raw_loop(data: list) -> None:
    m = model()
    optimizer = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for x, y in data:
        loss = nn.functional.cross_entropy(m(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    torch.stack(losses).tolist()


def raw_loop_with_work(data: list, runs: Path) -> None:
    m = model()
    optimizer = torch.optim.Adam(m.parameters(), lr=1e-3)
    params, one = list(m.parameters()), torch.ones(1)
    flags, found, bad_steps = torch.zeros(len(params) + 1), torch.zeros(1), torch.zeros(1)
    mask, slots = torch.zeros((), dtype=torch.bool), list(flags.split(1))
    losses = []
    with RunStore(runs) as store:
        tracker = Tracker(store=store, run_id=store.create_run("overhead-work", {}))
        for step, (x, y) in enumerate(data, start=1):
            loss = nn.functional.cross_entropy(m(x), y)
            optimizer.zero_grad()
            loss.backward()
            tensors = [*(p.grad for p in params), loss.detach()]
            torch._amp_foreach_non_finite_check_and_unscale_(tensors, found, one)
            for tensor, slot in zip(tensors, slots):
                torch._amp_foreach_non_finite_check_and_unscale_([tensor], slot, one)
            mask.copy_(found.view(()))
            bad_steps.add_(found)
            for p in params:
                p.grad.masked_fill_(mask, 0)
            optimizer.step()
            if step % 20 == 0 and torch.cat([bad_steps, flags]).tolist()[0]:
                raise FloatingPointError(f"a non-finite loss or gradient by step {step}")
            losses.append(loss.detach())
            tracker.add(step, {"train.lr": optimizer.param_groups[0]["lr"], "train.loss": losses[-1],
                               "train.samples": step * len(y)})
        tracker.close()
    torch.stack(losses).tolist()


class Untimed(PhaseClock):
    """The trainer's clock with its per-batch marks doing nothing."""

    def batch(self) -> None:
        pass

    def to(self, part: int) -> None:
        pass


def cadence_loop(data: list, runs: Path, timed: bool = True) -> None:
    m = model()
    with RunStore(runs) as store:
        run_id = store.create_run("overhead", {})
        tracker = Tracker(store=store, run_id=run_id)
        trainer = Trainer(m, torch.optim.Adam(m.parameters(), lr=1e-3), data, loss_fn=nn.functional.cross_entropy,
                          run=RunContext(tracker))
        if not timed:
            trainer.clock = Untimed(trainer.clock.phases)
        trainer.run()
        tracker.close()


def lightning_loop(data: list, logs: Path) -> None:
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model()

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=CSVLogger(logs), log_every_n_steps=1,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Module(), train_dataloaders=Batches(data))


def main() -> None:
    args = parse_args(__doc__, repeats=7)
    try:
        import lightning  # noqa: F401
    except ImportError:
        lightning_available = False
    else:
        lightning_available = True
        logging.getLogger("lightning").setLevel(logging.ERROR)
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module="lightning")
    folder = Path(tempfile.mkdtemp(prefix="cadence-overhead-"))
    data = {n: batches(n) for n in STEPS}
    cases = {}
    for n in STEPS:
        cases[("raw loop", n)] = lambda n=n: raw_loop(data[n])
        cases[("raw loop + cadence's work", n)] = lambda n=n: raw_loop_with_work(data[n], folder / "work")
        cases[("cadence Trainer", n)] = lambda n=n: cadence_loop(data[n], folder / "runs")
        cases[("cadence Trainer, untimed", n)] = lambda n=n: cadence_loop(data[n], folder / "runs", timed=False)
        if lightning_available:
            cases[("Lightning Trainer", n)] = lambda n=n: lightning_loop(data[n], folder / "lightning")
    start = time.perf_counter()
    medians = interleaved_medians(cases, repeats=args.repeats, warmup=1)
    per_step = {name: (medians[(name, STEPS[1])] - medians[(name, STEPS[0])]) / (STEPS[1] - STEPS[0])
                for name, _ in cases}
    table = Table(title=f"Trainer overhead, tiny MLP, batch 64 ({setting(args)}, "
                        f"{time.perf_counter() - start:.0f} s)")
    for column in ("loop", f"{STEPS[0]} steps (s)", "per step (us)", "per-step overhead vs raw loop"):
        table.add_column(column, justify="right" if column != "loop" else "left")
    base = per_step["raw loop"]
    for name in per_step:
        table.add_row(name, f"{medians[(name, STEPS[0])]:.3f}", f"{per_step[name] * 1e6:.1f}",
                      "" if name == "raw loop" else f"{(per_step[name] / base - 1) * 100:+.1f}%")
    timing = per_step["cadence Trainer"] / per_step["cadence Trainer, untimed"] - 1
    table.caption = f"where the time goes costs {timing * 100:+.1f}% of the trainer's step"
    if not lightning_available:
        table.caption += "; Lightning is not installed: pip install -c constraints.txt -e '.[bench]'"
    Console().print(table)


if __name__ == "__main__":
    main()
