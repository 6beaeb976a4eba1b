"""Every optimizer on sharded parameters (FSDP2's DTensors) takes the steps it takes on one process.

Two gloo processes on loopback each shard the same model with ``fully_shard`` (each Linear, then
the root), and every optimizer of the factory (and AdamFP16) steps it, reference and fused paths,
with weight decay, AMSGrad where it has it, a step masked by ``found_inf``, a state dict round trip
through ``load_state_dict``, one through ``torch.distributed.checkpoint``'s
``get_optimizer_state_dict`` / ``set_optimizer_state_dict``, and a state dict of whole tensors
written on one process loaded onto the shards. The same optimizer on one process takes the same
steps from the same gradients: the gathered parameters (``full_tensor()``), the state tensors
and the sharded model's output (FSDP gathers each parameter from its own storage) agree to 1e-5.

The gradients are set directly, identical on both processes (each rank's shard of one
deterministic tensor), so that Sophia, whose curvature refresh samples labels per rank, is
compared on identical gradients, refresh included. The model's dims 0 are 7, 5, 4 and 1: uneven
shards, and none at all on rank 1 for the head.

One spawn runs every case and writes what it found; the tests read it.
"""

from __future__ import annotations

import datetime
import json
import os
import traceback

import pytest
import torch
import torch.distributed as dist
from torch import nn

from cadence.optim import AdamFP16, GradScalerFP16, OptimizerConfig, build_optimizer, clip_grad_norm, clip_grad_value
from cadence.optim.helpers.factory import OPTIMIZERS
from tests.processes import free_port, spawn

#: Seconds the two processes may take in all (compilations of the fused updates included), and any collective.
TIMEOUT, COLLECTIVE_TIMEOUT = 240, 60
STEPS = 6
#: What each step does besides stepping on the step's gradients.
MASKED_STEP, LOAD_STEP, DCP_STEP, FROM_ONE_PROCESS_STEP = 3, 4, 5, 6
#: Before this step the parameters change in place outside the optimizer (as loading a model's state dict does).
CHANGED_STEP = 2
HESSIAN_STEPS = (2, 5)

#: Case id: the factory's config (``OptimizerConfig`` fields), or ``"adam_fp16"``.
CASES: dict[str, dict] = {
    "adam": {"name": "adam", "weight_decay": 0.1},
    "adam-fused": {"name": "adam", "weight_decay": 0.1, "fused": True},
    "adamw-textbook": {"name": "adam", "weight_decay": 0.1, "weight_decouple": True, "optimized_update": False},
    "amsgrad": {"name": "amsgrad", "weight_decay": 0.1},
    "adam_warmup": {"name": "adam_warmup", "amsgrad": True, "warmup": 3, "weight_decay": 0.1},
    "adam_warmup_cosine_decay": {"name": "adam_warmup_cosine_decay", "warmup": 2, "total_steps": 10,
                                 "weight_decay": 0.1},
    "noam": {"name": "noam", "warmup": 3, "d_model": 16, "weight_decay": 0.1},
    "radam": {"name": "radam", "amsgrad": True, "weight_decay": 0.1, "rho_threshold": 4.0},
    "ada_belief": {"name": "ada_belief", "amsgrad": True, "weight_decay": 0.1},
    "ada_belief-fused": {"name": "ada_belief", "amsgrad": True, "weight_decay": 0.1, "fused": True},
    "lion": {"name": "lion", "weight_decay": 0.1},
    "lion-fused": {"name": "lion", "weight_decay": 0.1, "fused": True},
    "sophia": {"name": "sophia", "weight_decay": 0.1, "rho": 0.05},
    "lamb": {"name": "lamb", "weight_decay": 0.1},
    "lamb-coupled": {"name": "lamb", "weight_decay": 0.1, "weight_decouple": False},
    "muon": {"name": "muon", "weight_decay": 0.1, "adamw_lr": 1e-2},
    "sgd": {"name": "sgd", "weight_decay": 0.1, "momentum": 0.9, "nesterov": True},
    "sgd-fused": {"name": "sgd", "weight_decay": 0.1, "momentum": 0.9, "fused": True},  # refused (REFUSED)
    "adam_fp16": {"name": "adam_fp16", "weight_decay": 0.1},
}


#: Cases refused, and what their error says.
REFUSED = {"sgd-fused": ("sgd: fused=True, and parameter 0 of group 0 (shape [7, 6]) is sharded",
                         "use optimizer.fused=false")}


def make_model(dtype: torch.dtype = torch.float32) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 7), nn.Tanh(), nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(),
                         nn.Linear(4, 1)).to(dtype)


def make_optimizer(case: dict, model: nn.Module) -> torch.optim.Optimizer:
    config = dict(case, lr=1e-2)
    if config.pop("name") == "adam_fp16":
        return AdamFP16(model.parameters(), **config)
    return build_optimizer(OptimizerConfig(name=case["name"], **config), model)


def gradients(step: int, model: nn.Module) -> list[torch.Tensor]:
    """The step's gradients, whole, the same on every process."""
    generator = torch.Generator().manual_seed(step)
    return [torch.randn(p.shape, generator=generator).to(p.dtype) for p in model.parameters()]


def set_grads(model: nn.Module, grads: list[torch.Tensor]) -> None:
    """Each parameter's gradient: a DTensor (this rank's shard) for a sharded one, as FSDP leaves it after a
    backward pass; copied into the one it has for another (the fused path keeps it as a view)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    for p, g in zip(model.parameters(), grads):
        if isinstance(p, DTensor):
            p.grad = distribute_tensor(g, p.device_mesh, p.placements, src_data_rank=None)
        elif p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)


def whole(x: torch.Tensor) -> torch.Tensor:
    return x.full_tensor() if hasattr(x, "full_tensor") else x


def max_difference(xs, ys) -> float:
    return max(((whole(x).double() - whole(y).double()).abs().max().item() for x, y in zip(xs, ys)
                if x.numel()), default=0.0)


def state_tensors(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[torch.Tensor]:
    return [value for p in model.parameters() for _, value in sorted(optimizer.state[p].items())
            if isinstance(value, torch.Tensor) and value.ndim > 0]


def run_case(case: dict, rank: int) -> dict:
    """Step the sharded model and a one-process copy through the same gradients; return how far apart they are."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    dtype = torch.float16 if case["name"] == "adam_fp16" else torch.float32
    model, reference = make_model(dtype), make_model(dtype)
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    optimizer, one = make_optimizer(case, model), make_optimizer(case, reference)
    result = {"masked": None, "placements": True}
    for step in range(1, STEPS + 1):
        grads = gradients(step, reference)
        if step in HESSIAN_STEPS and case["name"] == "sophia":  # the curvature refresh, on the same gradients
            for m, o in ((model, optimizer), (reference, one)):
                set_grads(m, grads)
                o.update_hessian(batch_size=8)
            grads = gradients(100 + step, reference)
        for m, o in ((model, optimizer), (reference, one)):
            set_grads(m, grads)
        if step == CHANGED_STEP:
            with torch.no_grad():
                for m in (model, reference):
                    for p in m.parameters():
                        p.mul_(0.75)
        if step == MASKED_STEP:
            if not getattr(optimizer, "supports_found_inf", False):
                continue
            before = [p.detach().to_local().clone() for p in model.parameters()]
            states_before = [s.to_local().clone() for s in state_tensors(optimizer, model)]
            for o in (optimizer, one):
                o.found_inf = torch.ones(1)
                o.step()
                del o.found_inf
            result["masked"] = all(torch.equal(b, p.to_local()) for b, p in zip(before, model.parameters())) and \
                all(torch.equal(b, s.to_local()) for b, s in zip(states_before, state_tensors(optimizer, model)))
            continue
        if step == LOAD_STEP:  # a state dict round trip, and a step told nothing is wrong
            optimizer, one = reload(case, model, optimizer), reload(case, reference, one)
            for o in (optimizer, one):
                if getattr(o, "supports_found_inf", False):
                    o.found_inf = torch.zeros(1)
        if step == DCP_STEP:  # through torch.distributed.checkpoint's state dict, sharded
            saved = get_optimizer_state_dict(model, optimizer)
            names = dict(zip(model.state_dict(), model.parameters()))
            for name, state in saved["state"].items():
                for value in state.values():
                    if isinstance(value, torch.Tensor) and value.ndim > 0:
                        p = names[name]
                        result["placements"] &= isinstance(value, DTensor) and value.placements == p.placements \
                            and value.shape == p.shape
            # a fresh optimizer and no gradients, as at a resume: DCP takes a step of zero gradients at lr=0 to make
            # the state it loads into, which must leave the parameters as they are
            model.zero_grad(set_to_none=True)
            optimizer = make_optimizer(case, model)
            set_optimizer_state_dict(model, optimizer, saved)
            set_grads(model, grads)
            one = reload(case, reference, one)
        if step == FROM_ONE_PROCESS_STEP and case["name"] != "sgd":  # one process's state dict (whole tensors)
            # onto the shards (cadence's optimizers; torch's SGD takes DTensors only, from DCP)
            state = one.state_dict()
            optimizer = make_optimizer(case, model)
            optimizer.load_state_dict(state)
        for o in (optimizer, one):
            o.step()
            vars(o).pop("found_inf", None)
    result["params"] = max_difference(model.parameters(), reference.parameters())
    states = state_tensors(optimizer, model), state_tensors(one, reference)
    result["state_count"] = [len(states[0]), len(states[1])]
    result["states"] = max_difference(*states)
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(1)).to(dtype)
    with torch.no_grad():
        result["forward"] = max_difference([model(x)], [reference(x)])
    if case.get("fused") and hasattr(optimizer, "fused_step"):
        result["compiled"] = [optimizer.fused_step.compiled_runs, optimizer.fused_step.eager_runs]
        # the state tensors are DTensors over views of the flat buffers, not copies of them
        buffers = [flat for flats in optimizer.fused_step._buffers.values() for flat in flats]
        result["state_views"] = bool(buffers) and all(
            st[name].to_local().untyped_storage().data_ptr() == flat.state[name].untyped_storage().data_ptr()
            for flat in buffers for st in flat.states for name in flat.state)
    result["scale"] = max(p.detach().abs().max().item() for p in reference.parameters())
    return result


def reload(case: dict, model: nn.Module, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """A new optimizer of the model, given ``optimizer``'s state dict."""
    fresh = make_optimizer(case, model)
    fresh.load_state_dict(optimizer.state_dict())
    return fresh


def clipping(rank: int) -> dict:
    """Clipping by global norm and by value of sharded gradients, against the same on one process; and the FP16
    scaler's non-finite check, with an infinity in one rank's shard only."""
    from torch.distributed.fsdp import fully_shard

    model, reference = make_model(), make_model()
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    result = {}
    for name, clip, threshold in (("norm", clip_grad_norm, 1.0), ("value", clip_grad_value, 0.5)):
        grads = gradients(7, reference)
        set_grads(model, grads)
        set_grads(reference, grads)
        norms = [clip(m.parameters(), threshold) for m in (model, reference)]
        result[name] = {"plain": type(norms[0]) is torch.Tensor, "norm": abs(norms[0].item() - norms[1].item()),
                        "grads": max_difference([p.grad for p in model.parameters()],
                                                [p.grad for p in reference.parameters()])}
    grads = gradients(8, reference)
    grads[0][-1, 0] = float("inf")  # the last row of the first matrix: rank 1's shard only
    set_grads(model, grads)
    scaler = GradScalerFP16(init_scale=1.0)
    scaler.unscale_(AdamFP16(model.parameters()))
    result["scaler_found_inf"] = scaler._found_inf
    return result


def worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT))
    try:
        results = {}
        for case_id, case in CASES.items():
            try:
                results[case_id] = run_case(case, rank)
            except Exception:
                results[case_id] = {"error": traceback.format_exc()}
            dist.barrier()
        try:
            results["clipping"] = clipping(rank)
        except Exception:
            results["clipping"] = {"error": traceback.format_exc()}
        with open(f"{out}.{rank}", "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's shutdown, where gloo's threads can abort the process after its work is saved.
    os._exit(0)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> list[dict]:
    """What each of the two processes found, by rank."""
    out = str(tmp_path_factory.mktemp("sharded") / "results")
    spawn(worker, (free_port(), out), TIMEOUT)
    found = []
    for rank in range(2):
        with open(f"{out}.{rank}") as f:
            found.append(json.load(f))
    return found


def test_every_optimizer_of_the_factory_is_covered():
    """Every optimizer on the reference path. The fused path's handling of shards is the template's, one for all
    updates: it is run here on three updates of one, two and three states (Lion, Adam, AdaBelief with AMSGrad's
    maximum), each optimizer's own fused update being tested against its reference in its own tests."""
    assert {case["name"] for case in CASES.values()} == {*OPTIMIZERS, "adam_fp16"}
    assert {case["name"] for case in CASES.values() if case.get("fused")} == {"adam", "ada_belief", "lion", "sgd"}


@pytest.mark.slow
@pytest.mark.parametrize("case_id", list(CASES))
def test_sharded_steps_equal_one_process_steps(results, case_id):
    for rank, found in enumerate(results):
        result = found[case_id]
        if case_id in REFUSED:  # by name, at construction, saying what to do instead
            assert "error" in result and all(text in result["error"] for text in REFUSED[case_id]), result
            continue
        assert "error" not in result, f"rank {rank}:\n{result['error']}"
        assert result["params"] <= 1e-5, f"rank {rank}: parameters {result['params']:.3g} apart"
        sharded_count, one_count = result["state_count"]
        assert sharded_count == one_count, f"rank {rank}: {sharded_count} state tensors, {one_count} on one process"
        assert result["states"] <= 1e-5, f"rank {rank}: states {result['states']:.3g} apart"
        assert result["forward"] <= 1e-5 * max(1.0, result["scale"]), \
            f"rank {rank}: the sharded model's output {result['forward']:.3g} from the one process's"
        assert result["placements"], f"rank {rank}: a state tensor is not a DTensor placed like its parameter"
        if CASES[case_id]["name"] != "sgd":
            assert result["masked"], f"rank {rank}: a step masked by found_inf changed a parameter or a state"
        if "compiled" in result:  # the fused path ran compiled, never eagerly, its states views of its buffers
            compiled, eager = result["compiled"]
            assert compiled > 0 and eager == 0, f"rank {rank}: {compiled} compiled, {eager} eager fused steps"
            assert result["state_views"], f"rank {rank}: a state tensor is not a view of the fused path's buffer"


@pytest.mark.slow
def test_clipping_and_the_fp16_scaler_see_the_whole_gradients(results):
    for rank, found in enumerate(results):
        result = found["clipping"]
        assert "error" not in result, f"rank {rank}:\n{result['error']}"
        for name in ("norm", "value"):
            assert result[name]["plain"], f"rank {rank}: clip_grad_{name} returned a DTensor"
            assert result[name]["norm"] <= 1e-5 and result[name]["grads"] <= 1e-6, (rank, name, result[name])
        assert result["scaler_found_inf"] is True, f"rank {rank} missed the other rank's infinity"
