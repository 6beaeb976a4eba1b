"""Normalization layers, one module per paper."""

from cadence.nn.norm.batch_norm import BatchNorm

__all__ = ["BatchNorm"]
