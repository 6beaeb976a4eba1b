"""Timing helpers shared by the benchmarks: medians of interleaved repeats after warm-up."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def interleaved_medians(cases: dict[str, Callable[[], None]], repeats: int, warmup: int = 2,
                        inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each case.

    Every case is warmed up first; then each round times ``inner`` calls of every case in
    turn, so that slow drifts of the machine hit all cases alike.
    """
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(t) for name, t in times.items()}


def parse_args(doc: str, repeats: int, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
               ) -> argparse.Namespace:
    """The benchmarks' common options (``--repeats``, ``--threads``, 1 by default), applied to torch."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=repeats, help="timed rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args
