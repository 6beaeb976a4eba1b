"""Timing helpers shared by the benchmarks: medians of interleaved repeats after warm-up."""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time
from collections.abc import Callable

import torch

from cadence.data import resolve_data_dir


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


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process; ``False`` where there is no glibc.

    By default glibc returns the free top of its heap to the system once it exceeds a trim
    threshold (and serves large blocks with fresh ``mmap``), so a step that allocates large
    temporaries page-faults them back on the next call, or not, depending on what the
    previous calls freed: measured here, one and the same layer or optimizer step swings
    between 0.7x and 2x its peer. With the thresholds raised, repeats time the code, not
    the allocator's heuristics.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    # Values are C ints; 32 MiB is the largest mmap threshold glibc accepts on 64-bit systems.
    return bool(mallopt(M_TRIM_THRESHOLD, 1 << 30)) and bool(mallopt(M_MMAP_THRESHOLD, 32 << 20))


def parse_args(doc: str, repeats: int, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
               allocator: str = "steady", data_dir: bool = False) -> argparse.Namespace:
    """The benchmarks' common options, applied: ``--repeats``, ``--threads`` (1 by default) and
    ``--allocator`` (``steady``: :func:`keep_freed_memory`; ``default``: glibc's own thresholds).

    With ``data_dir``, also ``--data-dir``, resolved as the library resolves it
    (:func:`cadence.data.resolve_data_dir`: the option, else ``$CADENCE_DATA``, else the user
    cache folder) into an absolute ``args.data_dir``.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if data_dir:
        parser.add_argument("--data-dir", help="data directory (default: $CADENCE_DATA, else the user cache); "
                                               "data sets missing from it are downloaded")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--allocator", choices=("steady", "default"), default=allocator,
                        help="steady: glibc's malloc keeps freed memory, so timings do not include the page faults "
                             "of its trimming heuristics; default: glibc's own behaviour")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    if data_dir:
        args.data_dir = resolve_data_dir(args.data_dir)
    torch.set_num_threads(args.threads)
    if args.allocator == "steady" and not keep_freed_memory():
        args.allocator = "default (no glibc)"
    return args


def setting(args: argparse.Namespace) -> str:
    """How the timings were taken, for a table's title."""
    return f"{args.threads} thread(s), median of {args.repeats}, {args.allocator} allocator"
