"""Optimizers (each paper in its own module), weight-decay strategies and optimizer helpers."""

from cadence.optim.adam import Adam
from cadence.optim.factory import OPTIMIZERS, OptimizerConfig, build_optimizer
from cadence.optim.generic import GenericAdaptiveOptimizer
from cadence.optim.weight_decay import WeightDecay

__all__ = ["OPTIMIZERS", "Adam", "GenericAdaptiveOptimizer", "OptimizerConfig", "WeightDecay", "build_optimizer"]
