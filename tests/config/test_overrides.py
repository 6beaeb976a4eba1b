"""Dotted key=value overrides on typed configs, and the errors a mistyping user sees."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from cadence.config import ConfigError, apply_overrides, to_dict, to_yaml
from cadence.experiments.mnist import MNISTConfig
from cadence.optim import OptimizerConfig


def test_overrides_convert_to_the_fields_types():
    config = apply_overrides(MNISTConfig(), ["optimizer.lr=3e-4", "epochs=2", "inner_iterations=5",
                                             "optimizer.betas=[0.8, 0.95]", "optimizer.optimized_update=false"])
    assert config.optimizer.lr == 3e-4 and isinstance(config.optimizer.lr, float)
    assert config.epochs == 2 and config.inner_iterations == 5
    assert config.optimizer.betas == (0.8, 0.95) and config.optimizer.optimized_update is False
    assert isinstance(config, MNISTConfig) and isinstance(config.optimizer, OptimizerConfig)


def test_the_original_is_untouched_and_later_overrides_win():
    original = MNISTConfig()
    config = apply_overrides(original, ["epochs=2", "epochs=3"])
    assert config.epochs == 3 and original.epochs == 5


def test_unknown_key_names_the_valid_keys_at_that_level_and_the_nearest():
    with pytest.raises(ConfigError) as e:
        apply_overrides(MNISTConfig(), ["optimizer.nmae=adam"])
    message = str(e.value)
    assert "unknown key 'optimizer.nmae'; did you mean 'optimizer.name'?" in message
    assert "Valid keys under 'optimizer': name, lr, betas, eps" in message


def test_unknown_top_level_key_without_a_near_match():
    with pytest.raises(ConfigError, match=r"unknown key 'zzz'\. Valid keys at the top level: seed, epochs"):
        apply_overrides(MNISTConfig(), ["zzz=1"])


def test_near_match_of_a_group_name():
    with pytest.raises(ConfigError, match=r"unknown key 'optimzer.lr'; did you mean 'optimizer'\?"):
        apply_overrides(MNISTConfig(), ["optimzer.lr=1e-3"])


@pytest.mark.parametrize("override, expected", [
    ("optimizer.lr=3e-4x", r"optimizer.lr expects a value of type float, got '3e-4x'"),
    ("epochs=2.5", r"epochs expects a value of type int, got '2.5'"),
    ("optimizer.optimized_update=maybe", r"optimizer.optimized_update expects a value of type bool, got 'maybe'"),
    ("optimizer.betas=[0.9, 0.99, 0.999]", r"optimizer.betas expects a value of type tuple\[float, float\]"),
])
def test_a_mistyped_value_names_key_value_and_type(override, expected):
    with pytest.raises(ConfigError, match=expected):
        apply_overrides(MNISTConfig(), [override])


@pytest.mark.parametrize("override", ["epochs", "=3", "  =1"])
def test_malformed_overrides(override):
    with pytest.raises(ConfigError, match="is not of the form key=value"):
        apply_overrides(MNISTConfig(), [override])


def test_a_value_is_not_a_group():
    with pytest.raises(ConfigError, match="epochs is a value, not a group of keys, so it has no key 'x'"):
        apply_overrides(MNISTConfig(), ["epochs.x=1"])


def test_post_init_validation_is_reported_as_a_config_error():
    @dataclass
    class Checked:
        n: int = 1

        def __post_init__(self):
            if self.n < 1:
                raise ValueError(f"n={self.n}; expected n >= 1")

    with pytest.raises(ConfigError, match="n=0; expected n >= 1"):
        apply_overrides(Checked(), ["n=0"])


@dataclass
class Inner:
    a: tuple[float, float] = (0.1, 0.2)


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    name: str = "x"


def test_dict_and_yaml_views():
    assert to_dict(Outer()) == {"inner": {"a": (0.1, 0.2)}, "name": "x"}
    assert to_yaml(Outer()).splitlines() == ["inner:", "  a:", "  - 0.1", "  - 0.2", "name: x"]


def test_only_dataclass_instances_are_accepted():
    with pytest.raises(TypeError, match="expected a dataclass instance"):
        apply_overrides(MNISTConfig, ["epochs=1"])


def test_free_form_mappings_take_new_keys():
    config = apply_overrides(MNISTConfig(), ["optimizer.schedules.beta1=Linear(0.85, 0.95, 300)"])
    assert config.optimizer.schedules == {"beta1": "Linear(0.85, 0.95, 300)"}


@dataclass
class WithRecipe:
    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0

    RECIPES = {"name=sgd": ("lr=0.05", "momentum=0.9")}


def test_an_override_brings_its_recipe():
    assert apply_overrides(WithRecipe(), ["name=sgd"]) == WithRecipe("sgd", 0.05, 0.9)


@pytest.mark.parametrize("overrides", [["lr=0.1", "name=sgd"], ["name=sgd", "lr=0.1"]])
def test_a_value_given_wins_over_the_recipe_wherever_it_stands(overrides):
    assert apply_overrides(WithRecipe(), overrides) == WithRecipe("sgd", 0.1, 0.9)


def test_other_values_bring_no_recipe():
    assert apply_overrides(WithRecipe(), ["name=lion"]) == WithRecipe("lion", 1e-3, 0.0)
