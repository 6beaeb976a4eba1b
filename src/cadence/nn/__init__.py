"""Layers; normalization layers are in :mod:`cadence.nn.norm`."""

from cadence.nn import norm
from cadence.nn.norm import BatchNorm

__all__ = ["BatchNorm", "norm"]
