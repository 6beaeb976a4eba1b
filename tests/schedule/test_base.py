"""Tests of :mod:`cadence.schedule.base`: the abstract schedule, and the layer's independence of torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cadence.schedule import Flat, Schedule


def test_schedule_is_abstract():
    with pytest.raises(TypeError):
        Schedule()


def test_a_subclass_gets_repr_and_equality_from_its_arguments():
    class Linear(Schedule):
        def __init__(self, slope: float):
            self.slope = slope

        def __call__(self, x: float) -> float:
            return self.slope * x

        def arguments(self) -> dict:
            return {"slope": self.slope}

    assert repr(Linear(2.0)) == "Linear(slope=2.0)"
    assert eval(repr(Linear(2.0))) == Linear(2.0) != Linear(3.0)
    assert Linear(1.0) != Flat(1.0) and Flat(1.0) != 1.0


def test_importing_schedules_does_not_import_torch():
    code = "import sys, cadence.schedule; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
