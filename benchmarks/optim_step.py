"""Time of one ``optimizer.step()``: cadence's optimizers against ``torch.optim.Adam``, in one process.

    python benchmarks/optim_step.py [--repeats 20] [--threads 1] [--allocator steady|default] [--only adam|family]

Two models: the MNIST batch-norm CNN (11 tensors, 0.43M parameters) and a GPT-like stack of
150 tensors and 21M parameters. Gradients are fixed random tensors, so only the step is
timed. Each optimizer steps its own copy of the parameters; rounds are interleaved and the
median taken after warm-up (which includes ``torch.compile`` for the fused rows; its time
is printed apart). Ratios are to ``torch.optim.Adam(fused=True)`` measured in the same rounds.

The first tables set cadence's Adam beside each of torch's Adam implementations; the last
one times every optimizer of the family on the GPT-like model, fused and per-parameter,
each beside its own measurement of torch's fused Adam and, where torch implements the same
update (AdamW, Adam with ``amsgrad=True``, RAdam), beside that too: AMSGrad reads and writes
one more state tensor than Adam (36 bytes a parameter instead of 28), so at the memory
bandwidth limit it takes 1.2-1.3x Adam's step, torch's own AMSGrad included.

The per-parameter steps (cadence's reference path, torch's for-loop and foreach Adam)
allocate temporaries, and glibc's malloc returns freed memory above its trim threshold to
the system, so on Linux these steps can spend half their time page-faulting it back (it
shows as system time). On the machine of the README's figures torch's for-loop Adam took
129 ms a step with the default allocator and 65 ms with
``MALLOC_TRIM_THRESHOLD_=1000000000 MALLOC_MMAP_THRESHOLD_=1000000000``; the fused steps
allocate nothing and do not move. The benchmarks therefore raise glibc's thresholds
(``--allocator steady``, the default; ``--allocator default`` measures with glibc's own).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, parse_args, setting  # noqa: E402

from cadence.experiments.mnist import BatchNormCNN  # noqa: E402
from cadence.optim import (LAMB, AdaBelief, Adam, AdamWarmup, AdamWarmupCosineDecay, AMSGrad,  # noqa: E402
                           Lion, Muon, Noam, RAdam, Sophia, WeightDecay, muon_param_groups)


def gpt_like(d: int = 384, layers: int = 12, vocab: int = 65, context: int = 256) -> nn.Module:
    """Token and position embeddings, ``layers`` pre-norm blocks, a final norm and a head: 150 tensors."""
    blocks = []
    for _ in range(layers):
        blocks += [nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d), nn.LayerNorm(d),
                   nn.Linear(d, 4 * d), nn.Linear(4 * d, d)]
    return nn.Sequential(nn.Embedding(vocab, d), nn.Embedding(context, d), *blocks, nn.LayerNorm(d),
                         nn.Linear(d, vocab))


OPTIMIZERS = {
    "cadence Adam (folded eps)": lambda p: Adam(p, lr=1e-3),
    "cadence Adam (textbook)": lambda p: Adam(p, lr=1e-3, optimized_update=False),
    "cadence Adam, decoupled decay": lambda p: Adam(p, lr=1e-3, weight_decay=WeightDecay(0.01)),
    "cadence Adam fused=True": lambda p: Adam(p, lr=1e-3, fused=True),
    "cadence Adam fused=True, decoupled decay": lambda p: Adam(p, lr=1e-3, weight_decay=WeightDecay(0.01), fused=True),
    "torch Adam foreach=False": lambda p: torch.optim.Adam(p, lr=1e-3, foreach=False),
    "torch Adam foreach=True": lambda p: torch.optim.Adam(p, lr=1e-3, foreach=True),
    "torch Adam fused=True": lambda p: torch.optim.Adam(p, lr=1e-3, fused=True),
}
PEER = "torch Adam fused=True"

#: Every optimizer of the family, made with ``fused=False`` or ``fused=True``, and torch's own
#: implementation of the same update where it has one (its fastest: fused, else foreach).
FAMILY = {
    "Adam": (lambda p, fused: Adam(p, fused=fused), lambda p: torch.optim.Adam(p, fused=True)),
    "Adam, decoupled decay": (lambda p, fused: Adam(p, weight_decay=WeightDecay(0.01), fused=fused),
                              lambda p: torch.optim.AdamW(p, weight_decay=0.01, fused=True)),
    "AMSGrad": (lambda p, fused: AMSGrad(p, fused=fused), lambda p: torch.optim.Adam(p, amsgrad=True, fused=True)),
    "AdamWarmup": (lambda p, fused: AdamWarmup(p, warmup=100, fused=fused), None),
    "AdamWarmupCosineDecay": (lambda p, fused: AdamWarmupCosineDecay(p, warmup=10, total_steps=1000, fused=fused),
                              None),
    "Noam": (lambda p, fused: Noam(p, warmup=100, fused=fused), None),
    "RAdam": (lambda p, fused: RAdam(p, fused=fused), lambda p: torch.optim.RAdam(p, foreach=True)),
    "AdaBelief": (lambda p, fused: AdaBelief(p, fused=fused), None),
    "Lion": (lambda p, fused: Lion(p, weight_decay=WeightDecay(0.1), fused=fused), None),
    "Sophia": (lambda p, fused: Sophia(p, fused=fused), None),
}

#: Optimizers whose update needs whole tensors (norms, matrix products): no fused path; timed beside.
WHOLE_TENSOR = {
    "LAMB": lambda p: LAMB(p, weight_decay=0.01),
    "Muon (float32 Newton-Schulz on CPU)": lambda p: Muon(muon_param_groups(p)),
}


def with_grads(make_model) -> list[torch.Tensor]:
    """A fresh copy of the model's parameters, each with a fixed random gradient."""
    torch.manual_seed(0)
    params = list(make_model().parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def family_table(repeats: int, timing: str) -> Table:
    """Each optimizer of the family on the GPT-like model: reference, fused, and torch's fused Adam."""
    table = Table("optimizer", "reference ms", "fused ms", f"fused x {PEER}", "fused speed-up over reference",
                  "torch's same update ms", "fused x torch's same update", "compile s",
                  title=f"the family on the GPT-like model (150 tensors, 21.4M parameters), {timing}")
    for name, (make, make_torch) in FAMILY.items():
        reference, fused = make(with_grads(gpt_like), False), make(with_grads(gpt_like), True)
        peer = torch.optim.Adam(with_grads(gpt_like), fused=True)
        cases = {"reference": reference.step, "fused": fused.step, PEER: peer.step}
        if make_torch is not None:
            cases["torch"] = make_torch(with_grads(gpt_like)).step
        fused.step()  # compiles (or loads the compiled kernel from Inductor's cache)
        medians = interleaved_medians(cases, repeats=repeats, warmup=2)
        same = (f"{medians['torch'] * 1e3:.1f}", f"{medians['fused'] / medians['torch']:.2f}") if "torch" in medians \
            else ("-", "-")
        table.add_row(name, f"{medians['reference'] * 1e3:.1f}", f"{medians['fused'] * 1e3:.1f}",
                      f"{medians['fused'] / medians[PEER]:.2f}", f"{medians['reference'] / medians['fused']:.1f}",
                      *same, f"{fused.fused_step.compile_seconds:.1f}")
        del reference, fused, peer, cases
    for name, make in WHOLE_TENSOR.items():
        optimizer, peer = make(with_grads(gpt_like)), torch.optim.Adam(with_grads(gpt_like), fused=True)
        medians = interleaved_medians({"reference": optimizer.step, PEER: peer.step}, repeats=repeats, warmup=2)
        table.add_row(name, f"{medians['reference'] * 1e3:.1f}", "-", f"({medians['reference'] / medians[PEER]:.2f})",
                      "-", "-", "-", "-")
        del optimizer, peer
    return table


def measure(make_model, repeats: int) -> tuple[dict[str, float], float]:
    """Median seconds per step of each optimizer, and the seconds the fused rows spent compiling."""
    optimizers = {name: make_optimizer(with_grads(make_model)) for name, make_optimizer in OPTIMIZERS.items()}
    medians = interleaved_medians({name: opt.step for name, opt in optimizers.items()}, repeats=repeats, warmup=3)
    compile_seconds = sum(opt.fused_step.compile_seconds for opt in optimizers.values()
                          if getattr(opt, "fused_step", None) is not None)
    return medians, compile_seconds


def main() -> None:
    args = parse_args(__doc__, repeats=20, add_arguments=lambda parser: parser.add_argument(
        "--only", choices=("adam", "family"), help="run only the Adam tables or only the family table"))
    console = Console(width=150)
    models = (("MNIST batch-norm CNN", BatchNormCNN), ("GPT-like, 150 tensors", gpt_like))
    for label, make_model in models if args.only != "family" else ():
        model = make_model()
        tensors, numel = len(list(model.parameters())), sum(p.numel() for p in model.parameters())
        medians, compile_seconds = measure(make_model, args.repeats)
        table = Table("optimizer", "ms / step", f"x {PEER}",
                      title=f"{label}: {tensors} tensors, {numel / 1e6:.2f}M parameters, {setting(args)}")
        for name, seconds in medians.items():
            table.add_row(name, f"{seconds * 1e3:.2f}", f"{seconds / medians[PEER]:.2f}")
        console.print(table)
        console.print(f"torch.compile of the fused rows (first calls, Inductor's disk cache warm or cold): "
                      f"{compile_seconds:.1f} s\n")
    if args.only != "adam":
        console.print(family_table(args.repeats, setting(args)))


if __name__ == "__main__":
    main()
