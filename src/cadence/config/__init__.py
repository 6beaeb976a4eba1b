"""Typed configs (dataclasses) and their dotted ``key=value`` overrides from the command line.

The configs are plain dataclasses; `OmegaConf <https://omegaconf.readthedocs.io>`_ structured
configs do the merging and the type conversion. OmegaConf was chosen over tyro and
jsonargparse because its native override syntax is exactly ``key.sub=value`` (the other two
parse ``--key.sub value`` flags), it validates and converts values against the dataclass
annotations (including nested dataclasses, tuples and enums), and it is widely used for
exactly this (Hydra is built on it). What cadence adds is the error messages: every failure
names the override, the key, the value and what was expected.
"""

from cadence.config.overrides import ConfigError, apply_overrides, from_dict, to_dict, to_yaml

__all__ = ["ConfigError", "apply_overrides", "from_dict", "to_dict", "to_yaml"]
