"""The warm-up, decays, Noam, WSD, one-cycle, restarts and compositions: values, errors, repr, plot."""

from __future__ import annotations

import pytest

from cadence.schedule import (Cosine, CosineWarmRestarts, Exponential, Flat, Linear, LinearWarmup, Noam, OneCycle,
                              Polynomial, Product, Sequential, Step, WarmupStableDecay, parse_schedule)
from cadence.schedule import __all__ as names

ALL = [LinearWarmup(1e-3, 100, start=1e-5), Cosine(1.0, 1000, floor=0.1), Linear(1.0, 0.0, 50), Polynomial(2.0, 80, 2.0, 0.5),
       Exponential(1.0, 0.99), Step(1.0, 10, 0.5), Noam(2.0, 512, 4000), WarmupStableDecay(1.0, 10, 100, 20, 0.01),
       OneCycle(1.0, 500, three_phase=True), CosineWarmRestarts(1.0, 30, 2, 0.05),
       Sequential([LinearWarmup(1.0, 10), Cosine(1.0, 90)], [10]), Product([Cosine(1.0, 100), Flat(3e-4)])]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_repr_round_trips_through_eval_and_parse(schedule):
    namespace = {name: getattr(__import__("cadence.schedule", fromlist=[name]), name) for name in names}
    assert eval(repr(schedule), namespace) == schedule
    assert parse_schedule(repr(schedule)) == schedule
    assert parse_schedule(repr(schedule))(37) == schedule(37)


def test_warmup_then_hold():
    s = LinearWarmup(1.0, 10, start=0.5)
    assert [s(x) for x in (0, 5, 10, 100)] == pytest.approx([0.5, 0.75, 1.0, 1.0])


def test_noam_is_zero_at_zero_and_peaks_at_the_warmup():
    s = Noam(1.0, 512, 4000)
    assert s(0) == 0.0 and max(range(1, 10_000), key=s) == 4000
    assert s(4000) == pytest.approx(512 ** -0.5 * 4000 ** -0.5)


def test_warmup_stable_decay_phases():
    s = WarmupStableDecay(1.0, warmup=10, stable=100, decay=20, floor=0.1)
    assert [s(x) for x in (0, 5, 10, 109, 110, 120, 130, 1000)] == pytest.approx([0, 0.5, 1, 1, 1, 0.55, 0.1, 0.1])


def test_sequential_counts_each_schedule_from_its_start():
    s = Sequential([Flat(1.0), Linear(1.0, 0.0, 10), Flat(0.0)], [5, 15])
    assert [s(x) for x in (0, 4.9, 5, 10, 15, 99)] == pytest.approx([1, 1, 1, 0.5, 0, 0])


def test_product():
    assert Product([Cosine(2.0, 100), Flat(0.5)])(50) == pytest.approx(0.5)


@pytest.mark.parametrize("make, error, message", [
    (lambda: Cosine(1.0, 0), ValueError, r"Cosine: total_steps=0 is out of range; expected total_steps > 0"),
    (lambda: Exponential(1.0, -0.5), ValueError, r"Exponential: gamma=-0.5 is out of range; expected gamma > 0"),
    (lambda: Step(1.0, 0, 0.1), ValueError, r"Step: step_size=0 is out of range; expected step_size > 0"),
    (lambda: OneCycle(1.0, 100, pct_start=1.2), ValueError, r"OneCycle: pct_start=1.2 is out of range"),
    (lambda: OneCycle(1.0, 100, anneal="cosine"), ValueError, r"anneal='cosine'; expected 'cos' or 'linear'"),
    (lambda: CosineWarmRestarts(1.0, 0), ValueError, r"t_0=0 is out of range; expected t_0 >= 1"),
    (lambda: Sequential([Flat(1.0), Flat(2.0)], []), ValueError, r"2 schedules need 1 boundaries, got boundaries=\[\]"),
    (lambda: Sequential([Flat(1.0), Flat(2.0), Flat(3.0)], [5, 5]), ValueError, r"boundaries=\[5, 5\]; expected strictly"),
    (lambda: Sequential([1.0], []), TypeError, r"expected a non-empty list of schedules"),
    (lambda: Linear("1", 0.0, 10), TypeError, r"Linear: start='1' is a str; expected a real number"),
    (lambda: LinearWarmup(1.0, -1), ValueError, r"LinearWarmup: warmup=-1 is out of range; expected warmup >= 0"),
])
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("text, message", [
    ("Cosinee(1, 2)", r"unknown schedule 'Cosinee'; did you mean 'Cosine'\? Known: Cosine"),
    ("__import__('os').system('true')", r"is not allowed|unknown schedule"),
    ("Cosine(1e-3, 5000", r"is not valid: '\(' was never closed"),
    ("Cosine(1)", r"missing 1 required positional argument: 'total_steps'"),
    ("0.001", r"is a float, not a schedule"),
])
def test_parse_refuses_anything_but_schedule_calls(text, message):
    with pytest.raises(ValueError, match=message):
        parse_schedule(text)


def test_plot_writes_a_png(tmp_path):
    path = Sequential([LinearWarmup(1.0, 10), Cosine(1.0, 90)], [10]).plot(100, tmp_path / "lr.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_values_past_the_end_hold():
    assert Cosine(1.0, 100, 0.2)(1e6) == pytest.approx(0.2)
    assert OneCycle(1.0, 100)(1e6) == pytest.approx(OneCycle(1.0, 100)(99))
    # a fractional power of a negative remainder would be complex: past T the polynomial is its floor, exactly
    assert [Polynomial(1.0, 10, 0.5, floor=0.25)(x) for x in (10, 11, 1e6)] == [0.25, 0.25, 0.25]
    assert Polynomial(1.0, 10, 0.5)(11) == 0.0
