"""The template across the whole elementwise family: fused equals reference, exact resume, validation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch._inductor.utils import run_and_get_code

from cadence.optim import (LAMB, AdaBelief, Adam, AdamFP16, AdamWarmup, AdamWarmupCosineDecay, AMSGrad,
                           GenericAdaptiveOptimizer, Lion, Muon, Noam, RAdam, Sophia, WeightDecay)

from .conftest import assert_compiled, relative_difference, set_grads, small_cnn

FAMILY = {
    "adam": lambda p, **kw: Adam(p, lr=1e-3, **kw),
    "adamw": lambda p, **kw: Adam(p, lr=1e-3, weight_decay=WeightDecay(0.05), **kw),
    "amsgrad": lambda p, **kw: AMSGrad(p, lr=1e-3, **kw),
    "adam_warmup": lambda p, **kw: AdamWarmup(p, lr=1e-3, warmup=50, **kw),
    "adam_warmup_cosine": lambda p, **kw: AdamWarmupCosineDecay(p, lr=1e-3, warmup=20, total_steps=200, **kw),
    "noam": lambda p, **kw: Noam(p, lr=0.5, warmup=50, d_model=64, **kw),
    "radam": lambda p, **kw: RAdam(p, lr=1e-3, weight_decay=WeightDecay(1e-2, weight_decouple=False), **kw),
    "radam_amsgrad": lambda p, **kw: RAdam(p, lr=1e-3, amsgrad=True, **kw),
    "ada_belief": lambda p, **kw: AdaBelief(p, lr=1e-3, **kw),
    "ada_belief_plain": lambda p, **kw: AdaBelief(p, lr=1e-3, rectify=False, amsgrad=True, **kw),
    "lion": lambda p, **kw: Lion(p, lr=1e-4, weight_decay=WeightDecay(0.1), **kw),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY)
def test_fused_equals_the_reference_path(replay, name):
    reference = replay(lambda p: FAMILY[name](p))
    fused = replay(lambda p: FAMILY[name](p, fused=True))
    assert_compiled(replay.optimizer)
    assert relative_difference(reference, fused) < 1e-6


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["reference", "fused"])
@pytest.mark.parametrize("name", FAMILY)
def test_a_state_dict_saved_mid_run_continues_bit_identically(real_gradients, name, fused):
    def steps(model, optimizer, grads):
        for gs in grads:
            optimizer.zero_grad()
            set_grads(model.parameters(), gs)
            optimizer.step()

    torch.manual_seed(0)
    uninterrupted = small_cnn()
    steps(uninterrupted, FAMILY[name](uninterrupted.parameters(), fused=fused), real_gradients[:40])

    torch.manual_seed(0)
    first = small_cnn()
    optimizer = FAMILY[name](first.parameters(), fused=fused)
    steps(first, optimizer, real_gradients[:20])
    saved_model, saved_optimizer = copy.deepcopy(first.state_dict()), copy.deepcopy(optimizer.state_dict())
    del first, optimizer

    resumed = small_cnn()
    resumed.load_state_dict(saved_model)
    fresh = FAMILY[name](resumed.parameters(), fused=fused)
    fresh.load_state_dict(saved_optimizer)
    steps(resumed, fresh, real_gradients[20:40])
    if fused:
        assert_compiled(fresh)
    for p, q in zip(uninterrupted.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY)
def test_each_fused_update_compiles_to_one_loop(name):
    """A group's whole update is one compiled kernel, one pass over its flat buffers, in every branch
    (RAdam's and AdaBelief's rectified or not: 8 steps cross rho_t's threshold). Counted in Inductor's C++
    for the CPU; a second kernel would mean a second pass over memory."""
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(37, 11)), nn.Parameter(torch.randn(5))]
    optimizer = FAMILY[name](params, fused=True)
    kernels = []
    for _ in range(8):
        for p in params:
            p.grad = torch.randn_like(p)
        _, code = run_and_get_code(optimizer.step)
        kernels += [c.count('extern "C"') for c in code]
    assert_compiled(optimizer)
    assert kernels and all(n == 1 for n in kernels), kernels


@pytest.mark.parametrize("make, where", [
    (Adam, "Adam"), (AMSGrad, "AMSGrad"), (RAdam, "RAdam"), (AdaBelief, "AdaBelief"), (Lion, "Lion"),
    # the presets are Adam (or AMSGrad) with a schedule: the checks of what they pass on name that optimizer
    (AdamWarmup, "Adam"), (AdamWarmupCosineDecay, "Adam"),
    (lambda params, **kw: Noam(params, amsgrad=True, **kw), "AMSGrad"),
])
@pytest.mark.parametrize("kwargs, message", [
    ({"betas": (0.9, 1.0)}, r"betas\[1\]=1.0 is out of range; expected betas\[1\] in \[0, 1\)"),
    ({"betas": (-0.1, 0.9)}, r"betas\[0\]=-0.1 is out of range"),
    ({"weight_decay": WeightDecay(0.1), "params": [{"params": [nn.Parameter(torch.ones(1))], "weight_decay": -1}]},
     r"weight_decay=-1 is out of range; expected weight_decay >= 0"),
])
def test_bad_hyper_parameters_fail_naming_optimizer_parameter_and_range(make, where, kwargs, message):
    kwargs = {"params": [nn.Parameter(torch.ones(1))], **kwargs}
    with pytest.raises(ValueError, match=rf"^{where}: {message}"):
        make(**kwargs)


@pytest.mark.parametrize("make", [Adam, AMSGrad, RAdam, AdaBelief, Lion, AdamWarmup, AdamWarmupCosineDecay, Noam])
def test_a_bad_learning_rate_fails_naming_what_was_called(make):
    with pytest.raises(ValueError, match=rf"^{make.__name__}: lr=-0.001 is out of range; expected lr >= 0$"):
        make([nn.Parameter(torch.ones(1))], lr=-1e-3)


@pytest.mark.parametrize("make", [Adam, AMSGrad, RAdam, AdaBelief, AdamWarmup, AdamWarmupCosineDecay])
def test_a_bad_epsilon_fails(make):
    with pytest.raises(ValueError, match=r"eps=-1.0 is out of range; expected eps >= 0"):
        make([nn.Parameter(torch.ones(1))], eps=-1.0)


def test_rho_threshold_must_be_positive():
    with pytest.raises(ValueError, match=r"RAdam: rho_threshold=0.0 is out of range; expected rho_threshold > 0"):
        RAdam([nn.Parameter(torch.ones(1))], rho_threshold=0.0)
    with pytest.raises(ValueError, match=r"AdaBelief: rho_threshold=-4.0 is out of range"):
        AdaBelief([nn.Parameter(torch.ones(1))], rho_threshold=-4.0)


def test_an_optimizer_whose_update_is_not_elementwise_refuses_the_fused_path():
    class WholeTensor(GenericAdaptiveOptimizer):
        elementwise = False

    with pytest.raises(ValueError, match="WholeTensor: fused=True needs an elementwise update"):
        WholeTensor([nn.Parameter(torch.ones(1))], {}, 1e-3, (0.9, 0.99), 1e-8, fused=True)


@pytest.mark.parametrize("cls", [Adam, AMSGrad, RAdam, AdaBelief, Lion, Sophia, LAMB, Muon, AdamFP16])
def test_every_optimizer_is_a_direct_child_of_the_template(cls):
    """No paper inherits another paper's update: each writes its own from the template's shared pieces."""
    assert cls.__bases__ == (GenericAdaptiveOptimizer,)


@pytest.mark.parametrize("make, decoupled", [(Adam, False), (AMSGrad, False), (RAdam, False), (AdaBelief, False),
                                             (AdamFP16, False), (Lion, True), (Sophia, True), (LAMB, True),
                                             (Muon, True)])
def test_a_float_weight_decay_is_torchs_coupled_l2_or_the_papers_decoupled_decay(make, decoupled):
    """Coupled L2 for the Adam family, as torch.optim.Adam(weight_decay=...) reads it; decoupled where
    the optimizer's paper decouples it. A float steps exactly as the WeightDecay it stands for."""
    def run(weight_decay: float | WeightDecay) -> torch.Tensor:
        torch.manual_seed(0)
        param = nn.Parameter(torch.randn(4, 3))
        optimizer = make([param], weight_decay=weight_decay)
        for step in range(8):
            param.grad = torch.randn(4, 3)
            optimizer.step()
        return param.detach()

    assert make([nn.Parameter(torch.ones(2, 2))], weight_decay=0.1).weight_decay.weight_decouple is decoupled
    assert torch.equal(run(0.1), run(WeightDecay(0.1, weight_decouple=decoupled)))
    assert not torch.equal(run(0.1), run(WeightDecay(0.1, weight_decouple=not decoupled)))
