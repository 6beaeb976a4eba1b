"""The found_inf protocol on every optimizer of the template, reference and fused: a set flag leaves parameters and
state bit-identical, a zero flag changes nothing, no host read either way, and the fused masking in the one loop."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch._inductor.utils import run_and_get_code
from torch.overrides import TorchFunctionMode

from cadence.optim import (LAMB, AdaBelief, Adam, AdamFP16, AMSGrad, GenericAdaptiveOptimizer, Lion, Muon, RAdam,
                           Sophia, WeightDecay)
from cadence.optim.fused import vector_width_option

from .conftest import assert_compiled

#: Every optimizer on the template, with a weight decay where it has one, and whether it has a fused path.
OPTIMIZERS = {
    "adam": (lambda p, **kw: Adam(p, lr=1e-2, weight_decay=WeightDecay(0.1), **kw), True),
    "amsgrad": (lambda p, **kw: AMSGrad(p, lr=1e-2, weight_decay=0.01, **kw), True),
    "radam": (lambda p, **kw: RAdam(p, lr=1e-2, amsgrad=True, **kw), True),
    "ada_belief": (lambda p, **kw: AdaBelief(p, lr=1e-2, **kw), True),
    "lion": (lambda p, **kw: Lion(p, lr=1e-3, weight_decay=0.1, **kw), True),
    "sophia": (lambda p, **kw: Sophia(p, lr=1e-3, weight_decay=0.1, **kw), True),
    "lamb": (lambda p, **kw: LAMB(p, lr=1e-2, weight_decay=0.01, **kw), False),
    "muon": (lambda p, **kw: Muon(p, lr=1e-2, weight_decay=0.01, **kw), False),
    "adam_fp16": (lambda p, **kw: AdamFP16(p, lr=1e-2, **kw), False),
}
CASES = [pytest.param(name, fused, id=f"{name}-{'fused' if fused else 'reference'}")
         for name, (_, has_fused) in OPTIMIZERS.items() for fused in ([False, True] if has_fused else [False])]


def make(name: str, fused: bool) -> tuple[list[nn.Parameter], GenericAdaptiveOptimizer]:
    """Seeded parameters (matrices only for Muon, half precision for AdamFP16) and the optimizer over them."""
    torch.manual_seed(0)
    shapes = [(37, 11), (8, 3)] if name == "muon" else [(37, 11), (8, 3), (5,)]
    dtype = torch.float16 if name == "adam_fp16" else torch.float32
    params = [nn.Parameter(torch.randn(shape, dtype=dtype)) for shape in shapes]
    factory, _ = OPTIMIZERS[name]
    return params, factory(params, **({"fused": True} if fused else {}))


def give_gradients(params: list[nn.Parameter], seed: int, value: float | None = None) -> None:
    """Seeded random gradients (or every element ``value``), into the existing ``.grad`` where there is one."""
    generator = torch.Generator().manual_seed(seed)
    for p in params:
        g = torch.randn(p.shape, generator=generator).to(p.dtype) if value is None else torch.full_like(p, value)
        if p.grad is None:
            p.grad = g
        else:
            p.grad.copy_(g)


def step(optimizer: GenericAdaptiveOptimizer, found_inf: torch.Tensor | None) -> None:
    """``optimizer.step()`` as a caller following the protocol takes it: the flag set before, deleted after."""
    if found_inf is None:
        optimizer.step()
        return
    optimizer.found_inf = found_inf
    optimizer.step()
    del optimizer.found_inf


def tensors(optimizer: GenericAdaptiveOptimizer) -> list[torch.Tensor]:
    """Copies of every parameter and every state tensor."""
    return [x.detach().clone() for group in optimizer.param_groups for p in group["params"]
            for x in (p, *(v for v in optimizer.state[p].values() if isinstance(v, torch.Tensor)))]


def test_the_template_declares_the_capability():
    assert GenericAdaptiveOptimizer.supports_found_inf is True
    assert GenericAdaptiveOptimizer.found_inf is None


@pytest.mark.parametrize("name, fused", CASES)
def test_a_set_flag_leaves_parameters_and_state_bit_identical(name, fused):
    params, optimizer = make(name, fused)
    for seed in range(3):
        give_gradients(params, seed)
        step(optimizer, None)
    before = tensors(optimizer)
    steps = [s["step"] for s in optimizer.state.values()]
    give_gradients(params, 0, value=float("nan"))
    step(optimizer, torch.ones(1))
    after = tensors(optimizer)
    assert len(after) == len(before) and all(torch.equal(a, b) for a, b in zip(after, before))
    # the host-side count moved on (it cannot wait for the flag; see GenericAdaptiveOptimizer.found_inf)
    assert [s["step"] for s in optimizer.state.values()] == [t + 1 for t in steps]
    give_gradients(params, 3)
    step(optimizer, None)
    assert all(torch.isfinite(x).all() for x in tensors(optimizer))
    if fused:
        assert_compiled(optimizer)


@pytest.mark.parametrize("name, fused", CASES)
def test_a_zero_flag_steps_bit_identically_to_no_flag(name, fused):
    params, optimizer = make(name, fused)
    twin_params, twin = make(name, fused)
    for seed in range(4):
        give_gradients(params, seed)
        give_gradients(twin_params, seed)
        step(optimizer, None)
        step(twin, torch.zeros(1))
        assert all(torch.equal(a, b) for a, b in zip(tensors(optimizer), tensors(twin)))
    if fused:
        assert_compiled(twin)


class HostReads(TorchFunctionMode):
    """Counts the calls that read a tensor's value on the host."""

    READS = {"item", "__bool__", "__float__", "__int__", "tolist"}

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) in self.READS:
            self.reads.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name, fused", CASES)
def test_a_step_given_the_flag_reads_nothing_on_the_host(name, fused):
    params, optimizer = make(name, fused)
    for seed, flag in enumerate([0.0, 1.0, 0.0]):
        give_gradients(params, seed)
        with HostReads() as counted:
            step(optimizer, torch.full((1,), flag))
        assert counted.reads == [], (seed, counted.reads)
    if fused:
        assert_compiled(optimizer)
    with HostReads() as counted:  # the count sees a read when there is one
        assert bool(torch.ones(1)) and float(torch.ones(())) == 1.0
    assert counted.reads == ["__bool__", "__float__"]


def cpp_kernels(code: list[str]) -> list[str]:
    """The C++ kernels in Inductor's generated modules."""
    return re.findall(r"r'''(.*?)'''", "".join(code), re.S)


def test_on_the_fused_path_the_flag_joins_the_update_in_one_loop_and_without_it_the_loop_is_the_update_alone():
    params, optimizer = make("adam", fused=True)
    give_gradients(params, 0)
    _, without = run_and_get_code(optimizer.step)
    give_gradients(params, 1)
    optimizer.found_inf = torch.zeros(1)
    _, masked = run_and_get_code(optimizer.step)
    del optimizer.found_inf
    assert_compiled(optimizer)
    assert len(cpp_kernels(masked)) == 1 and cpp_kernels(masked) != cpp_kernels(without)
    # without the flag: exactly the kernel of the update compiled alone, on flat tensors with the same scalars
    torch._dynamo.reset()
    flat = [torch.zeros(sum(p.numel() for p in params)) for _ in range(4)]
    scalars = {k: torch.tensor(v, dtype=torch.float64) if isinstance(v, float) else v
               for k, v in optimizer.scalars(optimizer.param_groups[0], 1).items()}
    update = torch.compile(Adam.update, dynamic=True, fullgraph=True, options=vector_width_option())
    _, alone = run_and_get_code(update, *flat, **scalars)
    assert len(cpp_kernels(without)) == 1 and cpp_kernels(without) == cpp_kernels(alone)


def test_the_masked_update_keeps_a_compile_budget_of_its_own_per_optimizer():
    """torch.compile counts its recompile limit per code object: each optimizer's masked update has its own."""
    from cadence.optim.fused import masked

    assert masked(Adam.update).__code__ is not masked(Lion.update).__code__
    assert masked(Adam.update) is masked(Adam.update)
    assert masked(Adam.update).__qualname__ == "Adam.update_unless_found_inf"

