"""Schedules: values as functions of the training step (plain Python, no torch).

A :class:`Schedule` maps a step $x$ to a value $s(x)$: :class:`Flat`, :class:`Dynamic`
(set from outside), :class:`Piecewise` and :class:`RelativePiecewise`, the warm-up and the
decays (:class:`LinearWarmup`, :class:`Cosine`, :class:`Linear`, :class:`Polynomial`,
:class:`Exponential`, :class:`Step`), :class:`Noam`, :class:`WarmupStableDecay`,
:class:`OneCycle`, :class:`CosineWarmRestarts`, and their compositions :class:`Sequential`
and :class:`Product`; :func:`warmup_cosine` composes the warm-up and the cosine that most
recipes take. :func:`parse_schedule` reads one back from its ``repr``.
"""

from cadence.schedule.base import Schedule
from cadence.schedule.compose import Product, Sequential
from cadence.schedule.decay import Cosine, Exponential, Linear, Polynomial, Step
from cadence.schedule.dynamic import Dynamic
from cadence.schedule.flat import Flat
from cadence.schedule.noam import Noam
from cadence.schedule.one_cycle import OneCycle
from cadence.schedule.parse import parse_schedule
from cadence.schedule.piecewise import Piecewise, RelativePiecewise
from cadence.schedule.restarts import CosineWarmRestarts
from cadence.schedule.warmup import LinearWarmup
from cadence.schedule.warmup_cosine import warmup_cosine
from cadence.schedule.wsd import WarmupStableDecay

__all__ = ["Cosine", "CosineWarmRestarts", "Dynamic", "Exponential", "Flat", "Linear", "LinearWarmup", "Noam",
           "OneCycle", "Piecewise", "Polynomial", "Product", "RelativePiecewise", "Schedule", "Sequential", "Step",
           "WarmupStableDecay", "parse_schedule", "warmup_cosine"]
