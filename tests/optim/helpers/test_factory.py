"""The factory: every optimizer by name, its fields passed by keyword, unused fields refused, schedules parsed."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

from cadence.optim import (OPTIMIZERS, Adam, HyperParameterScheduler, Muon, OptimizerConfig, OptimizerEntry,
                           build_optimizer, build_schedules)
from cadence.schedule import Cosine, Linear, warmup_cosine

from ..conftest import assert_compiled


def test_builds_adam_with_every_hyper_parameter():
    model = nn.Linear(3, 2)
    opt = build_optimizer(OptimizerConfig(name="adam", lr=3e-4, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1,
                                          weight_decouple=True, optimized_update=False), model)
    assert isinstance(opt, Adam) and not opt.optimized_update
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (3e-4, (0.8, 0.9), 1e-6, 0.1)
    assert opt.weight_decay.weight_decouple


def test_a_float_weight_decay_is_read_as_the_optimizer_reads_one():
    def strategy(**fields):
        return build_optimizer(OptimizerConfig(weight_decay=0.1, **fields), nn.Linear(3, 2)).weight_decay

    assert not strategy(name="adam").weight_decouple and strategy(name="lion").weight_decouple
    assert strategy(name="adam", absolute=True).absolute and strategy(name="adam", absolute=True).weight_decouple
    assert not strategy(name="lion", weight_decouple=False).weight_decouple


def test_unset_fields_leave_each_optimizer_its_own_defaults_and_set_ones_mean_what_they_say():
    """momentum=0 is no momentum, not Muon's default; a field at the config's default is the optimizer's own."""
    muon = build_optimizer(OptimizerConfig(name="muon", momentum=0.0), nn.Linear(3, 2))
    assert isinstance(muon, Muon) and muon.param_groups[0]["momentum"] == 0.0
    group = build_optimizer(OptimizerConfig(name="muon"), nn.Linear(3, 2)).param_groups[0]
    assert (group["momentum"], group["betas"], group["eps"]) == (0.95, (0.9, 0.95), 1e-8)
    assert build_optimizer(OptimizerConfig(name="ada_belief"), nn.Linear(3, 2)).param_groups[0]["eps"] == 1e-16
    assert build_optimizer(OptimizerConfig(name="noam"), nn.Linear(3, 2)).scheduler.schedules["lr"][2].warmup == 4000
    sgd = build_optimizer(OptimizerConfig(name="sgd", lr=0.1, momentum=0.0, nesterov=False), nn.Linear(3, 2))
    assert sgd.param_groups[0]["momentum"] == 0.0


def test_muon_from_a_model_updates_its_hidden_matrices_and_gives_the_rest_to_adamw_with_the_configs_betas_and_eps():
    """optimizer.betas and optimizer.eps are AdamW's, as for every optimizer; adamw_lr is the AdamW groups' rate."""
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 10))
    opt = build_optimizer(OptimizerConfig(name="muon", lr=0.01, betas=(0.8, 0.9), eps=1e-6, adamw_lr=1e-3,
                                          weight_decay=0.1), model)
    (muon,) = [g for g in opt.param_groups if g["use_muon"]]
    (adamw,) = [g for g in opt.param_groups if not g["use_muon"]]
    assert [id(p) for p in muon["params"]] == [id(model[1].weight)] and muon["lr"] == 0.01
    assert {id(p) for p in adamw["params"]} == {id(p) for p in model.parameters()} - {id(model[1].weight)}
    assert (adamw["lr"], adamw["betas"], adamw["eps"], adamw["weight_decay"]) == (1e-3, (0.8, 0.9), 1e-6, 0.1)


def test_builds_torch_sgd_from_parameters():
    params = list(nn.Linear(3, 2).parameters())
    opt = build_optimizer(OptimizerConfig(name="sgd", lr=0.1, momentum=0.9), params)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("fields, message", [
    ({"name": "adam", "momentum": 0.9}, r"^optimizer.momentum is not used by adam; it takes: lr, betas, eps, "
                                        r"weight_decay, weight_decouple, absolute, optimized_update, fused$"),
    ({"name": "adam", "momentum": 0.0, "warmup": 10}, r"^optimizer.warmup and optimizer.momentum are not used by adam"),
    ({"name": "lion", "eps": 1e-8}, r"^optimizer.eps is not used by lion"),
    ({"name": "lamb", "fused": True}, r"^optimizer.fused is not used by lamb"),
    ({"name": "sgd", "weight_decouple": True}, r"^optimizer.weight_decouple is not used by sgd"),
    ({"name": "muon", "optimized_update": False}, r"^optimizer.optimized_update is not used by muon; it takes: lr, "
                                                  r"betas, eps, weight_decay, weight_decouple, absolute, momentum, "
                                                  r"nesterov, adamw_lr$"),
    ({"name": "radam", "rectify": False}, r"^optimizer.rectify is not used by radam"),
])
def test_a_field_the_optimizer_does_not_use_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        build_optimizer(OptimizerConfig(**fields), nn.Linear(2, 2))


def test_fields_reach_the_constructor_by_name_whatever_its_order(monkeypatch):
    received = {}

    def reordered(params, fused=False, weight_decay=0.0, eps=0.0, betas=(0.0, 0.0), lr=0.0):
        received.update(fused=fused, weight_decay=weight_decay, eps=eps, betas=betas, lr=lr)
        return torch.optim.SGD(params, lr=lr)

    monkeypatch.setitem(OPTIMIZERS, "reordered", OptimizerEntry(reordered, ("betas", "eps", "fused")))
    build_optimizer(OptimizerConfig(name="reordered", lr=0.5, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1,
                                    fused=True), nn.Linear(2, 2))
    assert received == {"fused": True, "weight_decay": 0.1, "eps": 1e-6, "betas": (0.8, 0.9), "lr": 0.5}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimizers_declared_fields_are_exactly_the_config_fields_its_constructor_takes(name):
    """The declaration is the factory's only source (it reads no signature); here it is checked against one.
    weight_decouple and absolute are the WeightDecay strategy, which cadence's optimizers take as weight_decay."""
    entry = OPTIMIZERS[name]
    keywords = set(inspect.signature(entry.constructor).parameters)
    config_fields = {f.name for f in dataclasses.fields(OptimizerConfig)} - {"name", "schedule", "schedules"}
    strategy = {"weight_decouple", "absolute"}
    assert set(entry.fields) - strategy == (keywords & config_fields) - {"lr", "weight_decay"}
    assert strategy <= set(entry.fields) or name == "sgd"


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"optimizer.name='adamm' is not a known optimizer; expected one of: ada_belief, adam, adam_warmup, adam_warmup_cosine_decay, amsgrad, lamb, lion, muon, noam, radam, sgd, sophia"):
        build_optimizer(OptimizerConfig(name="adamm"), nn.Linear(2, 2))


def test_bad_hyper_parameter_from_a_config_is_named():
    with pytest.raises(ValueError, match=r"^optimizer: lr=-1.0 is out of range; expected lr >= 0"):
        OptimizerConfig(lr=-1.0)
    with pytest.raises(TypeError, match=r"^optimizer: warmup=2.5 is a float; expected an integer"):
        OptimizerConfig(warmup=2.5)
    with pytest.raises(ValueError, match=r"Adam: eps=-1.0 is out of range"):
        build_optimizer(OptimizerConfig(eps=-1.0), nn.Linear(2, 2))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_builds_from_the_config_and_steps(name):
    model = nn.Linear(3, 2)
    config = OptimizerConfig(name=name, lr=1e-2, warmup=5 if name == "noam" else None, weight_decay=0.01)
    opt = build_optimizer(config, model)
    before = model.weight.detach().clone()
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    assert not torch.equal(before, model.weight)


@pytest.mark.parametrize("name", ["adam", *(pytest.param(name, marks=pytest.mark.slow)
                                     for name in ("amsgrad", "radam", "ada_belief", "lion", "sophia", "noam"))])
def test_a_fused_optimizer_from_the_config_steps_compiled(name):
    def run(fused: bool) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        optimizer = build_optimizer(OptimizerConfig(name=name, fused=fused, warmup=5 if name == "noam" else None),
                                    model)
        for _ in range(3):
            optimizer.zero_grad()
            model(torch.ones(4, 3)).pow(2).sum().backward()
            optimizer.step()
        if fused:
            assert_compiled(optimizer)
        return model

    reference, fused = run(False), run(True)
    for p, q in zip(reference.parameters(), fused.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_schedules_are_parsed_from_the_config():
    config = OptimizerConfig(schedule="Cosine(0.001, 100)", schedules={"weight_decay": "Linear(0.0, 0.1, 10)"})
    assert build_schedules(config) == {"lr": Cosine(0.001, 100), "weight_decay": Linear(0.0, 0.1, 10)}
    with pytest.raises(ValueError, match=r"optimizer.schedules.beta1: schedule 'Cos\(1\)': unknown schedule 'Cos'"):
        build_schedules(OptimizerConfig(schedules={"beta1": "Cos(1)"}))
    assert build_schedules(OptimizerConfig(schedules={"beta2": "Cosine(0.999, 10)"})) == {"betas[1]": Cosine(0.999, 10)}


def test_a_preset_and_a_schedule_of_its_rate_from_the_config_are_refused():
    config = OptimizerConfig(name="adam_warmup", warmup=10, schedule="LinearWarmup(0.001, 10)")
    optimizer = build_optimizer(config, nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"cannot schedule 'lr' with LinearWarmup\(value=0.001, warmup=10.0, "
                                         r"start=0.0\): the optimizer \(Adam\) schedules 'lr' itself"):
        HyperParameterScheduler(optimizer, build_schedules(config))


def test_a_named_cosine_is_the_warm_up_and_cosine_schedule_over_the_runs_length_unless_the_config_gives_one():
    config = OptimizerConfig(lr=3e-3, schedule="cosine", warmup=100, min_lr=1e-4)
    assert build_schedules(config, total_steps=1000) == {"lr": warmup_cosine(3e-3, 100, 1000, 1e-4)}
    given = OptimizerConfig(lr=3e-3, schedule="cosine", total_steps=500)
    assert build_schedules(given, total_steps=1000) == {"lr": warmup_cosine(3e-3, 0, 500, 0.0)}
    with pytest.raises(ValueError, match=r"^optimizer.schedule: 'cosine' decays to optimizer.min_lr at "
                                         r"optimizer.total_steps, and neither it nor the run's length is given"):
        build_schedules(OptimizerConfig(schedule="cosine"))
    with pytest.raises(ValueError, match=r"^optimizer.schedule: cosine over the run's 50 steps: warmup=100 steps is "
                                         r"not shorter than total_steps=50"):
        build_schedules(config, total_steps=50)
    with pytest.raises(ValueError, match=r"^optimizer.schedule: cosine: min_lr=0.1 is out of range; expected min_lr "
                                         r"in \[0, 0.003\]"):
        build_schedules(OptimizerConfig(lr=3e-3, schedule="cosine", total_steps=10, min_lr=0.1))


def test_the_fields_a_named_schedule_reads_are_not_refused_as_unused_by_the_optimizer():
    config = OptimizerConfig(name="adam", schedule="cosine", warmup=10, min_lr=1e-5, total_steps=100)
    optimizer = build_optimizer(config, nn.Linear(2, 2))
    assert type(optimizer) is Adam and optimizer.scheduler.schedules == {}
    with pytest.raises(ValueError, match=r"^optimizer.warmup is not used by adam; it takes: lr, betas, eps, "
                                         r"weight_decay, weight_decouple, absolute, optimized_update, fused; "
                                         r"optimizer.schedule=cosine reads warmup, total_steps, min_lr$"):
        build_optimizer(OptimizerConfig(name="adam", warmup=10), nn.Linear(2, 2))


def test_the_warm_up_cosine_preset_reads_the_same_fields_and_takes_the_runs_length_when_the_config_has_none():
    def rate(optimizer):
        return optimizer.scheduler.schedules["lr"][2]

    config = OptimizerConfig(name="adam_warmup_cosine_decay", lr=3e-3, warmup=100, min_lr=1e-4)
    assert rate(build_optimizer(config, nn.Linear(2, 2), total_steps=1000)) == \
        build_schedules(dataclasses.replace(config, name="adam", schedule="cosine"), total_steps=1000)["lr"]
    given = dataclasses.replace(config, total_steps=500)
    assert rate(build_optimizer(given, nn.Linear(2, 2), total_steps=1000)) == warmup_cosine(3e-3, 100, 500, 1e-4)
    # two schedules of one rate stay refused: the preset's own and a named one beside it
    both = dataclasses.replace(config, schedule="cosine")
    optimizer = build_optimizer(both, nn.Linear(2, 2), total_steps=1000)
    with pytest.raises(ValueError, match=r"cannot schedule 'lr' with Sequential.*the optimizer \(Adam\) schedules "
                                         r"'lr' itself"):
        HyperParameterScheduler(optimizer, build_schedules(both, total_steps=1000))
