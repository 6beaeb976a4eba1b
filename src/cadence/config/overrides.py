"""Apply ``key=value`` overrides to a dataclass config, with errors that say what to type instead."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

C = TypeVar("C")


class ConfigError(ValueError):
    """A config override that does not fit the config: unknown key, malformed or mistyped value."""


def apply_overrides(config: C, overrides: Sequence[str]) -> C:
    """Return a copy of the dataclass ``config`` with every ``key=value`` override applied.

    Values are parsed as YAML (``3e-4``, ``true``, ``[0.9, 0.99]``) and converted to the
    field's type. Raises :class:`ConfigError` naming the override and, for an unknown key,
    the valid keys at that level and the nearest match; for a bad value, the key, the value
    and the expected type.

    A config class may declare ``RECIPES``: overrides that one override implies, such as
    ``{"optimizer.name=sgd": ("optimizer.lr=0.05", "optimizer.momentum=0.9")}``. A recipe's
    overrides are applied before all of those given, so a value given always wins, wherever
    it stands.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"apply_overrides: expected a dataclass instance, got {config!r}")
    merged = OmegaConf.structured(config)
    recipes = getattr(type(config), "RECIPES", {})
    implied = [implied for override in overrides for implied in recipes.get(override, ())]
    for override in [*implied, *overrides]:
        key, sep, value = override.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {override!r} is not of the form key=value (for example "
                              f"{_example(merged)})")
        _check_key(merged, key, override)
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([override]))
        except ValidationError:
            raise ConfigError(f"override {override!r}: {key} expects a value of type "
                              f"{_expected_type(config, key)}, got {value!r}") from None
        except OmegaConfBaseException as e:
            raise ConfigError(f"override {override!r}: {_first_line(e)}") from None
    try:
        return OmegaConf.to_object(merged)
    except (ValueError, TypeError) as e:  # a dataclass's own __post_init__ validation
        raise ConfigError(str(e)) from None


def from_dict(config_class: type[C], data: dict[str, Any]) -> C:
    """The dataclass ``config_class`` with the values of ``data`` (a config recorded by :func:`to_dict`), checked
    as overrides are: a key the class does not have, or a value of the wrong type, is a :class:`ConfigError`."""
    merged = OmegaConf.structured(config_class)
    try:
        merged = OmegaConf.merge(merged, OmegaConf.create(data))
        return OmegaConf.to_object(merged)
    except (OmegaConfBaseException, ValueError, TypeError) as e:
        raise ConfigError(f"a recorded {config_class.__name__} does not fit the config as it is now: "
                          f"{_first_line(e)}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts and lists (what runs and checkpoints store)."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True, enum_to_str=True)


def to_yaml(config: Any) -> str:
    """The config as YAML, as ``cadence config`` prints it."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def _check_key(config: DictConfig, key: str, override: str) -> None:
    node: Any = config
    path: list[str] = []
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            raise ConfigError(f"override {override!r}: {'.'.join(path)} is a value, not a group of keys, "
                              f"so it has no key {part!r}")
        if part not in node and OmegaConf.get_type(node) is dict:
            return  # a free-form mapping (``dict[str, ...]`` field): new keys are welcome
        if part not in node:
            valid = list(node.keys())
            where = f"under {'.'.join(path)!r}" if path else "at the top level"
            near = difflib.get_close_matches(part, valid, n=1, cutoff=0.5)
            hint = f"; did you mean {'.'.join(path + near)!r}?" if near else "."
            raise ConfigError(f"override {override!r}: unknown key {key!r}{hint} Valid keys {where}: "
                              f"{', '.join(valid)}")
        path.append(part)
        node = node[part] if isinstance(node, DictConfig) else None


def _expected_type(config: Any, key: str) -> str:
    node = config
    field = None
    for part in key.split("."):
        field = {f.name: f for f in dataclasses.fields(node)}[part]
        node = getattr(node, part)
    annotation = field.type if field is not None else type(node)
    return getattr(annotation, "__name__", str(annotation)) if not isinstance(annotation, str) else annotation


def _example(config: DictConfig) -> str:
    for key, value in config.items():
        if not isinstance(value, DictConfig):
            return f"{key}={value}"
    return "key=value"


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0]
