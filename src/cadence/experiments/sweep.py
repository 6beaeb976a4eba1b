"""Sweeps: a grid of configs of one experiment, a recorded run per point, as Hydra's multirun does.

``cadence train mnist -m optimizer.lr=1e-4,3e-4,1e-3 optimizer.name=adam,ada_belief`` runs
the six points of the product of the comma-separated values, one recorded run each, in the
order Hydra's basic sweeper takes them (the first override varies slowest). A comma inside
brackets, parentheses, braces or quotes does not separate values:
``optimizer.betas=[0.9,0.99],[0.8,0.9]`` sweeps two pairs and
``optimizer.schedule=Cosine(0.05, 625)`` is one value.

Every point's config is resolved before the first run, so a mistyped key or value refuses the
whole sweep and records nothing. The runs share a sweep tag (``sweep-<time>-<hex>``); a point
that fails, building or training, is recorded as a failed run with its error, and the sweep
goes on to the next. It ends with a table of each point's final and best values.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from cadence.config import ConfigError

__all__ = ["grid", "split_values"]

_OPENING, _CLOSING = "([{", ")]}"


def split_values(override: str) -> tuple[str, list[str]]:
    """``"key=a,b,c"`` as ``("key", ["a", "b", "c"])``: the values between top-level commas.

    Commas within ``()``, ``[]``, ``{}`` or quotes belong to their value. An empty value, or
    unbalanced brackets or quotes, is a :class:`~cadence.config.ConfigError` naming the override.
    """
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not of the form key=value or key=value1,value2,...")
    values, depth, quote, start = [], [], "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPENING:
            depth.append(_CLOSING[_OPENING.index(char)])
        elif char in _CLOSING:
            if not depth or depth.pop() != char:
                raise ConfigError(f"override {override!r}: unbalanced {char!r} at character {len(key) + 1 + i + 1}")
        elif char == "," and not depth:
            values.append(text[start:i])
            start = i + 1
    if quote or depth:
        raise ConfigError(f"override {override!r}: unclosed {quote or _OPENING[_CLOSING.index(depth[-1])]!r}")
    values.append(text[start:])
    if len(values) > 1 and any(not value.strip() for value in values):
        raise ConfigError(f"override {override!r}: an empty value in the sweep {text!r}; expected values "
                          f"separated by single commas, e.g. {key}=1e-4,3e-4")
    return key.strip(), values


def grid(overrides: Sequence[str]) -> list[list[str]]:
    """The points of a sweep: for each, the overrides ``key=value`` that make it, in the order of ``overrides``.

    The product of every override's values, the first override varying slowest; an override
    of one value is in every point. A key given twice is a :class:`~cadence.config.ConfigError`.
    """
    axes, seen = [], set()
    for override in overrides:
        key, values = split_values(override)
        if key in seen:
            raise ConfigError(f"override {override!r}: {key} is given twice; give its values once, "
                              f"separated by commas")
        seen.add(key)
        axes.append([f"{key}={value}" for value in values])
    return [list(point) for point in itertools.product(*axes)]
