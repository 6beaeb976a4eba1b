"""Schedules: values as functions of the training step (plain Python, no torch).

A :class:`Schedule` maps a step $x$ to a value $s(x)$: :class:`Flat`, :class:`Dynamic`
(set from outside), :class:`Piecewise` (linear between endpoints) and
:class:`RelativePiecewise` (endpoints at fractions of the training length).
"""

from cadence.schedule.base import Schedule
from cadence.schedule.dynamic import Dynamic
from cadence.schedule.flat import Flat
from cadence.schedule.piecewise import Piecewise, RelativePiecewise

__all__ = ["Dynamic", "Flat", "Piecewise", "RelativePiecewise", "Schedule"]
