import pytest
import torch
from torch import nn

from cadence.optim import OPTIMIZERS, Adam, OptimizerConfig, build_optimizer


def test_builds_adam_with_every_hyper_parameter():
    model = nn.Linear(3, 2)
    opt = build_optimizer(OptimizerConfig(name="adam", lr=3e-4, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1,
                                          weight_decouple=True, optimized_update=False), model)
    assert isinstance(opt, Adam) and not opt.optimized_update
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (3e-4, (0.8, 0.9), 1e-6, 0.1)
    assert opt.weight_decay.weight_decouple


def test_builds_torch_sgd_from_parameters():
    params = list(nn.Linear(3, 2).parameters())
    opt = build_optimizer(OptimizerConfig(name="sgd", lr=0.1, momentum=0.9), params)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"optimizer.name='adamm' is not a known optimizer; expected one of: ada_belief, adam, adam_warmup, adam_warmup_cosine_decay, amsgrad, lamb, lion, muon, noam, radam, sgd, sophia"):
        build_optimizer(OptimizerConfig(name="adamm"), nn.Linear(2, 2))


def test_bad_hyper_parameter_from_a_config_is_named():
    with pytest.raises(ValueError, match=r"Adam: lr=-1.0 is out of range"):
        build_optimizer(OptimizerConfig(lr=-1.0), nn.Linear(2, 2))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_builds_from_the_config_and_steps(name):
    model = nn.Linear(3, 2)
    config = OptimizerConfig(name=name, lr=1e-2, warmup=5 if name == "noam" else 0, weight_decay=0.01)
    opt = build_optimizer(config, model)
    before = model.weight.detach().clone()
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    assert not torch.equal(before, model.weight)


@pytest.mark.parametrize("name", ["adam", "radam", "ada_belief", "lion", "noam"])
def test_fused_flag_reaches_the_optimizer(name):
    opt = build_optimizer(OptimizerConfig(name=name, fused=True, warmup=5), nn.Linear(3, 2))
    assert opt.fused_step is not None


def test_schedules_are_parsed_from_the_config():
    from cadence.optim import build_schedules
    from cadence.schedule import Cosine, Linear

    config = OptimizerConfig(schedule="Cosine(0.001, 100)", schedules={"weight_decay": "Linear(0.0, 0.1, 10)"})
    assert build_schedules(config) == {"lr": Cosine(0.001, 100), "weight_decay": Linear(0.0, 0.1, 10)}
    with pytest.raises(ValueError, match=r"optimizer.schedules.beta1: schedule 'Cos\(1\)': unknown schedule 'Cos'"):
        build_schedules(OptimizerConfig(schedules={"beta1": "Cos(1)"}))
    assert build_schedules(OptimizerConfig(schedules={"beta2": "Cosine(0.999, 10)"})) == {"betas[1]": Cosine(0.999, 10)}
