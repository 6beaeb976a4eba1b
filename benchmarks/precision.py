"""bfloat16 autocast against float32 on this CPU, in one process: what ``precision="auto"`` decides from.

    python benchmarks/precision.py [--repeats 7] [--threads 2]

Three workloads, each timed in float32 (the peer) and under ``torch.autocast("cpu", torch.bfloat16)``,
forward and backward, rounds interleaved, medians after warm-up:

* the Shakespeare experiment's LSTM: 2 layers of 512 units, 32 columns of 128 steps;
* a 1024x1024 ``Linear`` on 4,096 rows;
* the probe :mod:`cadence.train.precision` runs once per process: a 512x512 product, forward only.

A ratio below 1 means bfloat16 is faster. The last line says what ``precision="auto"`` resolved to here, and why.
Run it again with ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` to see a CPU without native bfloat16 (its
LSTM row is then refused by oneDNN).
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
from common import interleaved_medians, parse_args, setting  # noqa: E402

from cadence.train.precision import bf16_support, resolve_precision  # noqa: E402


def workloads() -> dict[str, Callable[[bool], None]]:
    """Name to a step of that workload, under bfloat16 autocast when called with ``True``."""
    torch.manual_seed(0)
    lstm, sequences = nn.LSTM(512, 512, 2, batch_first=True), torch.randn(32, 128, 512)
    linear, rows = nn.Linear(1024, 1024), torch.randn(4096, 1024)
    square = torch.ones(512, 512)

    def trained(module: nn.Module, x: torch.Tensor) -> Callable[[bool], None]:
        def step(bf16: bool) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = module(x)
            (y[0] if isinstance(y, tuple) else y).float().sum().backward()
        return step

    def product(bf16: bool) -> None:
        x = square.to(torch.bfloat16) if bf16 else square
        torch.mm(x, x)

    return {"LSTM 2x512, 32x128, fwd+bwd": trained(lstm, sequences),
            "Linear 1024x1024, 4096 rows, fwd+bwd": trained(linear, rows),
            "512x512 product (the auto probe)": product}


def main() -> None:
    args = parse_args(__doc__, repeats=7, add_arguments=lambda p: p.set_defaults(threads=2))
    table = Table(title=f"bfloat16 autocast against float32 on the CPU ({setting(args)})")
    for column in ("workload", "float32 ms", "bf16 ms", "bf16 / float32"):
        table.add_column(column, justify="left" if column == "workload" else "right")
    refused = []
    for name, step in workloads().items():
        try:
            step(True)
        except RuntimeError as e:
            table.add_row(name, "", "", "refused")
            refused.append(f"{name}: {str(e).splitlines()[0]}")
            continue
        times = interleaved_medians({"32": lambda: step(False), "bf16": lambda: step(True)}, args.repeats)
        table.add_row(name, f"{times['32'] * 1e3:.1f}", f"{times['bf16'] * 1e3:.1f}",
                      f"{times['bf16'] / times['32']:.2f}")
    console = Console()
    console.print(table)
    for line in refused:
        console.print(f"bf16 refused, {line}", highlight=False)
    cpu = torch.device("cpu")
    console.print(f"precision='auto' resolves to {resolve_precision('auto', cpu)!r} here"
                  f"{'' if bf16_support(cpu) is None else ': ' + bf16_support(cpu)}", highlight=False)


if __name__ == "__main__":
    main()
