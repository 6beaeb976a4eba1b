"""Sweeps: Hydra's multirun syntax, the grid of points, and a recorded run per point."""

from __future__ import annotations

import re

import pytest

from cadence.config import ConfigError
from cadence.experiments.sweep import grid, split_values


@pytest.mark.parametrize("override, key, values", [
    ("optimizer.lr=1e-4,3e-4,1e-3", "optimizer.lr", ["1e-4", "3e-4", "1e-3"]),
    ("optimizer.name=adam", "optimizer.name", ["adam"]),
    ("optimizer.betas=[0.9,0.99],[0.8,0.9]", "optimizer.betas", ["[0.9,0.99]", "[0.8,0.9]"]),
    ("optimizer.schedule=Cosine(0.05, 625)", "optimizer.schedule", ["Cosine(0.05, 625)"]),
    ("optimizer.schedule=Cosine(0.1, 625),Cosine(0.05, 625)", "optimizer.schedule",
     ["Cosine(0.1, 625)", "Cosine(0.05, 625)"]),
    ("optimizer.schedules={beta1: 'Flat(0.9)'},{}", "optimizer.schedules", ["{beta1: 'Flat(0.9)'}", "{}"]),
    ("sample_prompt='ROMEO:,JULIET:'", "sample_prompt", ["'ROMEO:,JULIET:'"]),
    ("sample_prompt=\"a,b\",c", "sample_prompt", ['"a,b"', "c"]),
    ("sample_prompt=", "sample_prompt", [""]),
])
def test_values_are_split_at_commas_outside_brackets_and_quotes(override, key, values):
    assert split_values(override) == (key, values)


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr=1e-4,,1e-3", "an empty value in the sweep '1e-4,,1e-3'"),
    ("optimizer.lr=1e-4,", "an empty value in the sweep '1e-4,'"),
    ("optimizer.betas=[0.9,0.99", "unclosed '['"),
    ("optimizer.betas=(0.9,0.99]", "unbalanced ']' at character 26"),
    ("sample_prompt='abc", "unclosed \"'\""),
    ("epochs", "is not of the form key=value or key=value1,value2,..."),
])
def test_a_malformed_sweep_is_refused_naming_the_override(override, message):
    with pytest.raises(ConfigError, match=re.escape(f"override {override!r}") + ".*" + re.escape(message)):
        split_values(override)


def test_the_grid_is_the_product_with_the_first_override_varying_slowest():
    points = grid(["optimizer.lr=1e-4,3e-4,1e-3", "epochs=2", "optimizer.name=adam,ada_belief"])
    assert points == [[f"optimizer.lr={lr}", "epochs=2", f"optimizer.name={name}"]
                      for lr in ("1e-4", "3e-4", "1e-3") for name in ("adam", "ada_belief")]
    assert grid([]) == [[]]


def test_a_key_given_twice_is_refused():
    with pytest.raises(ConfigError, match="optimizer.lr is given twice; give its values once, separated by commas"):
        grid(["optimizer.lr=1e-4", "optimizer.lr=3e-4"])
