"""A small training run that the resume and interruption tests start, kill and resume in subprocesses.

    python tests/train/resumable_run.py RUN_DIR [--kill-at STEP] [--kill-in-save STEP] [--resume]
                                               [--slow-after STEP] [--sleep SECONDS] [--epochs N]

It draws on every source of randomness a run has: a shuffled, augmented loader, dropout
(torch's generator), and NumPy's and Python's generators in the step, and validates twice an
epoch. ``--kill-at`` SIGKILLs the process right after optimizer step STEP; ``--kill-in-save``
SIGKILLs it in the middle of writing the checkpoint of step STEP; ``--slow-after`` prints
``step N`` after every optimizer step after STEP and then sleeps ``--sleep`` seconds (for
signal tests; the trainer's lines go to standard output then, so that a test can wait for them). At the end the
model's
parameters go to ``RUN_DIR/final.pt``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time

import numpy as np
import torch
from rich.console import Console
from torch import nn

from cadence.data import InMemoryLoader
from cadence.metrics import Accuracy
from cadence.optim import Adam
from cadence.schedule import LinearWarmup
from cadence.track import RunContext
from cadence.train import Trainer
from cadence.train.interrupt import exit_code


def noise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """An augmentation drawn from the loader's per-batch generator."""
    return x + 0.1 * torch.randn(x.shape, generator=generator)


class Run(Trainer):
    """Uses NumPy's and Python's generators too, as user code may."""

    def step(self, batch, batch_index):
        x, y = self.to_device(batch)
        if self.mode.is_train:
            x = x * (1 + 0.01 * float(np.random.randn())) + 0.01 * random.random()
        output = self.model(x)
        for metric in self.metrics.values():
            metric.update(output, y)
        return nn.functional.cross_entropy(output, y), len(y)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--kill-at", type=int, default=0)
    parser.add_argument("--kill-in-save", type=int, default=0)
    parser.add_argument("--slow-after", type=int, default=-1)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(200, 8, generator=g), torch.randn(64, 8, generator=g)
    teacher = torch.randn(8, 3, generator=g)
    y, yv = (x @ teacher).argmax(-1), (xv @ teacher).argmax(-1)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))
    optimizer = Adam(model.parameters(), lr=1e-2)

    class Chores:
        def on_optimizer_step(self, trainer):
            step = trainer.global_step
            if step == args.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            if step == args.kill_in_save:
                original = torch.save

                def dying_save(obj, f):
                    original(obj, f)
                    os.kill(os.getpid(), signal.SIGKILL)

                torch.save = dying_save
            if args.slow_after >= 0 and step > args.slow_after:
                print(f"step {step}", flush=True)
                time.sleep(args.sleep)

    trainer = Run(model, optimizer,
                  InMemoryLoader(x, y, 16, shuffle=True, seed=0, augment=noise),
                  InMemoryLoader(xv, yv, 32),
                  metrics={"accuracy": Accuracy()}, epochs=args.epochs, inner_iterations=2, update_batches=2,
                  schedules={"lr": LinearWarmup(1e-2, 5)}, checkpoint_every=3, keep_last=100,
                  run=RunContext(run_dir=args.run_dir, experiment="resumable"), callbacks=[Chores()],
                  console=Console(file=sys.stdout) if args.slow_after >= 0 else False)
    if args.resume:
        trainer.resume(args.run_dir)
    status = trainer.run()
    # Each phase's epoch means, but where the time went and the speed: wall-clock measures, never the same twice.
    reported = {key: trainer.latest(key) for key in trainer.tracker.keys() if trainer.tracker.kind(key) == "epoch"
                and ".time." not in key and not key.endswith("_per_second")}
    torch.save({"params": [p.detach() for p in model.parameters()], "latest": reported,
                "status": status, "step": trainer.global_step}, os.path.join(args.run_dir, "final.pt"))
    return 0 if status == "finished" else exit_code(trainer.stopped_by)


if __name__ == "__main__":
    sys.exit(main())
