"""Tests of cadence.checks: the one argument check every layer uses."""

import math

import pytest
import torch

from cadence.checks import check_number


def test_returns_the_value_as_float_or_int():
    assert check_number("Adam", "lr", 3e-4, low=0) == 3e-4
    assert type(check_number("Adam", "lr", 1, low=0)) is float
    assert check_number("Loader", "batch_size", 64, low=1, integer=True) == 64
    assert type(check_number("Loader", "batch_size", 64, low=1, integer=True)) is int
    assert check_number("Adam", "lr", torch.tensor(0.5)) == 0.5


@pytest.mark.parametrize("value, kwargs, message", [
    (-1.0, {"low": 0}, "Adam: lr=-1.0 is out of range; expected lr >= 0$"),
    (0.0, {"low": 0, "low_open": True}, "Adam: lr=0.0 is out of range; expected lr > 0$"),
    (1.0, {"low": 0, "high": 1, "high_open": True}, r"Adam: lr=1.0 is out of range; expected lr in \[0, 1\)$"),
    (2.0, {"high": 1}, "Adam: lr=2.0 is out of range; expected lr <= 1$"),
    (2.5e-7, {"low": 1e-6, "high": 0.5, "low_open": True}, r"Adam: lr=2.5e-07 is out of range; expected lr in \(1e-06, 0.5\]$"),
    (math.nan, {}, "Adam: lr=nan is not a finite number; expected a finite number$"),
    (math.inf, {"low": 0}, "Adam: lr=inf is not a finite number; expected lr >= 0$"),
    (0, {"low": 1, "integer": True}, "Adam: lr=0 is out of range; expected lr >= 1$"),
])
def test_out_of_range_or_not_finite_names_owner_argument_value_and_range(value, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_number("Adam", "lr", value, **kwargs)


@pytest.mark.parametrize("value, integer, message", [
    ("3e-4x", False, "Adam: lr='3e-4x' is a str; expected a real number"),
    (True, False, "Adam: lr=True is a bool; expected a real number"),
    (2.0, True, "Adam: lr=2.0 is a float; expected an integer"),
    (torch.ones(2), False, "is a Tensor; expected a real number"),
])
def test_wrong_type_is_a_type_error(value, integer, message):
    with pytest.raises(TypeError, match=message):
        check_number("Adam", "lr", value, integer=integer)
