"""Data loading speed and memory, each against its plain-PyTorch peer measured in the same run.

    python benchmarks/data.py [--data-dir D] [--repeats 5] [--threads 1] [--corpus-mb 200]

Three tables:

* MNIST, samples/s of one epoch over the real training digits, batch 64, shuffled:
  ``InMemoryLoader`` over ``MNIST.images`` with ``MNIST.normalize`` on whole batches, against
  the per-item pipeline a ``torch.utils.data.Dataset`` gives (each item converted from uint8
  to a normalized float tensor on its own, collated by ``torch.utils.data.DataLoader``) with
  ``num_workers`` 0 and 2 (persistent workers, so their start-up is not timed).
  Target: the in-memory loader at least 20x the per-item pipeline with ``num_workers=0``.
* Tiny Shakespeare, tokens/s of one epoch of BPTT batches (batch 32, seq_len 128) from
  ``SequentialDataLoader`` (tokens in memory and memory-mapped), against plain torch: slicing
  each column of the token tensor in Python and stacking them, and labml_nn's layout (a
  transposed int64 copy of the whole stream made once, batches as views of it).
* Memory: peak resident memory above the interpreter's baseline (torch and cadence imported)
  while building the token cache of a generated corpus of ``--corpus-mb`` MB (Tiny Shakespeare
  repeated) and reading one epoch of batches from it, each in a fresh subprocess; the peer
  reads the same corpus into memory (``mmap_threshold=None``). Target: under 50 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, parse_args  # noqa: E402

from cadence.data import (  # noqa: E402
    MNIST,
    TINY_SHAKESPEARE_URL,
    InMemoryLoader,
    SequentialDataLoader,
    TextFileDataset,
    text_file_path,
)

BATCH = 64
SEQ_BATCH, SEQ_LEN = 32, 128


class PerItemMNIST(Dataset):
    """MNIST as a per-item data set: each digit converted to a normalized ``[1, 28, 28]`` float tensor on its own."""

    def __init__(self, mnist: MNIST) -> None:
        self.images, self.labels = mnist.images, mnist.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index].to(torch.float32).div(255).sub(MNIST.MEAN).div(MNIST.STD).unsqueeze(0)
        return image, self.labels[index]


def epoch(loader) -> None:
    for _ in loader:
        pass


def mnist_table(data_dir: Path, repeats: int) -> Table:
    mnist = MNIST(data_dir, train=True)
    n = len(mnist)
    per_item = PerItemMNIST(mnist)
    cases = {
        "InMemoryLoader (whole batches)": InMemoryLoader(
            mnist.images, mnist.labels, BATCH, shuffle=True, transform=MNIST.normalize
        ),
        "Dataset + DataLoader, num_workers=0": DataLoader(per_item, BATCH, shuffle=True),
        "Dataset + DataLoader, num_workers=2": DataLoader(
            per_item, BATCH, shuffle=True, num_workers=2, persistent_workers=True
        ),
    }
    times = interleaved_medians({name: (lambda loader=loader: epoch(loader)) for name, loader in cases.items()},
                                repeats, warmup=1)
    peer = times["Dataset + DataLoader, num_workers=0"]
    table = Table("loader", "samples / s", "x per-item, num_workers=0",
                  title=f"MNIST epoch ({n:,} digits, batch {BATCH}), median of {repeats}")
    for name, t in times.items():
        table.add_row(name, f"{n / t:,.0f}", f"{peer / t:.1f}")
    return table


def column_slices(tokens: torch.Tensor, batch_size: int, seq_len: int) -> None:
    """Plain torch: each batch stacks one slice per column, cut from the 1-D token tensor in Python."""
    length = len(tokens) // batch_size
    for start in range(0, length - 1, seq_len):
        stop = min(start + seq_len, length - 1)
        window = torch.stack([tokens[c * length + start : c * length + stop + 1] for c in range(batch_size)], 1).long()
        _ = window[:-1], window[1:]


def labml_views(data: torch.Tensor, seq_len: int) -> None:
    """labml_nn's SequentialDataLoader: batches are views of a transposed int64 copy of the stream."""
    for start in range(0, len(data) - 1, seq_len):
        stop = min(start + seq_len, len(data) - 1)
        _ = data[start:stop], data[start + 1 : stop + 1]


def text_table(data_dir: Path, repeats: int, workdir: Path) -> Table:
    corpus = workdir / "input.txt"
    corpus.write_bytes(text_file_path(TINY_SHAKESPEARE_URL, data_dir=data_dir).read_bytes())
    in_memory = TextFileDataset(corpus, "character")
    mapped = TextFileDataset(corpus, "character", mmap_threshold=0)
    tokens = in_memory.train_tokens
    loader = SequentialDataLoader(text=tokens, batch_size=SEQ_BATCH, seq_len=SEQ_LEN)
    n_tokens = loader.length * SEQ_BATCH - SEQ_BATCH  # inputs per epoch: (L - 1) per column
    labml_data = tokens.long()[: loader.length * SEQ_BATCH].view(SEQ_BATCH, -1).t().contiguous()
    cases = {
        "SequentialDataLoader, in memory": lambda: epoch(loader),
        "SequentialDataLoader, memory-mapped": lambda: epoch(
            SequentialDataLoader(text=mapped.train_tokens, batch_size=SEQ_BATCH, seq_len=SEQ_LEN)
        ),
        "torch: slice each column in Python": lambda: column_slices(tokens, SEQ_BATCH, SEQ_LEN),
        "labml_nn: views of a transposed int64 copy": lambda: labml_views(labml_data, SEQ_LEN),
    }
    times = interleaved_medians(cases, repeats, warmup=1)
    peer = times["torch: slice each column in Python"]
    table = Table("loader", "tokens / s", "x column slicing",
                  title=f"Tiny Shakespeare training epoch ({n_tokens:,} tokens, batch {SEQ_BATCH} x seq_len {SEQ_LEN}), "
                        f"median of {repeats}")
    for name, t in times.items():
        table.add_row(name, f"{n_tokens / t:,.0f}", f"{peer / t:.2f}")
    return table


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def memory_child(corpus: str, mmap_threshold: int | None) -> None:
    """In a fresh process: peak RSS above the baseline while loading ``corpus`` and reading one epoch of it."""
    baseline = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM, the peak resident set, to the current one
    start = time.perf_counter()
    dataset = TextFileDataset(corpus, "character", mmap_threshold=mmap_threshold)
    loaded = time.perf_counter()
    loader = SequentialDataLoader(text=dataset.train_tokens, batch_size=SEQ_BATCH, seq_len=SEQ_LEN)
    epoch(loader)
    done = time.perf_counter()
    json.dump({"baseline_kb": baseline, "peak_kb": _status_kb("VmHWM"), "load_s": loaded - start,
               "epoch_s": done - loaded, "tokens": loader.length * SEQ_BATCH}, sys.stdout)


def measure(corpus: Path, mmap_threshold: int | None) -> dict:
    argv = [sys.executable, __file__, "--memory-child", str(corpus), "--mmap-threshold", str(mmap_threshold)]
    result = subprocess.run(argv, check=True, capture_output=True, text=True)
    return json.loads(result.stdout)


def memory_table(data_dir: Path, corpus_mb: int, workdir: Path) -> Table:
    text = text_file_path(TINY_SHAKESPEARE_URL, data_dir=data_dir).read_bytes()
    corpus = workdir / "corpus.txt"
    with corpus.open("wb") as out:
        for _ in range(-(-corpus_mb * 2**20 // len(text))):
            out.write(text)
    size = corpus.stat().st_size
    runs = {
        "memory-mapped: build the token cache": measure(corpus, 0),
        "memory-mapped: cache present (verify and map)": measure(corpus, 0),
        "in memory (mmap_threshold=None)": measure(corpus, None),
    }
    table = Table("path", "load s", "epoch tokens / s", "peak RSS above baseline (MB)",
                  title=f"{size / 2**20:,.0f} MB generated corpus: load, then one epoch (batch {SEQ_BATCH} x seq_len "
                        f"{SEQ_LEN}); target < 50 MB memory-mapped")
    for name, run in runs.items():
        table.add_row(name, f"{run['load_s']:.1f}", f"{run['tokens'] / run['epoch_s']:,.0f}",
                      f"{(run['peak_kb'] - run['baseline_kb']) / 1024:,.1f}")
    return table


def main() -> None:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--corpus-mb", type=int, default=200, help="size of the generated corpus for the memory table")
        parser.add_argument("--memory-child", help=argparse.SUPPRESS)
        parser.add_argument("--mmap-threshold", help=argparse.SUPPRESS)

    # glibc's own allocator: the memory table measures what a user's process keeps resident.
    args = parse_args(__doc__, repeats=5, add_arguments=add_arguments, allocator="default", data_dir=True)
    if args.memory_child:
        memory_child(args.memory_child, None if args.mmap_threshold == "None" else int(args.mmap_threshold))
        return
    console = Console()
    console.print(mnist_table(args.data_dir, args.repeats))
    with tempfile.TemporaryDirectory() as workdir:
        console.print(text_table(args.data_dir, args.repeats, Path(workdir)))
        console.print(memory_table(args.data_dir, args.corpus_mb, Path(workdir)))


if __name__ == "__main__":
    sys.exit(main())
