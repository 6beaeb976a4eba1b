"""Optimizers (each paper in its own module), weight-decay strategies and optimizer helpers."""

from cadence.optim.ada_belief import AdaBelief
from cadence.optim.adam import Adam
from cadence.optim.adam_warmup import AdamWarmup
from cadence.optim.adam_warmup_cosine_decay import AdamWarmupCosineDecay
from cadence.optim.amsgrad import AMSGrad
from cadence.optim.factory import OPTIMIZERS, OptimizerConfig, build_optimizer
from cadence.optim.generic import GenericAdaptiveOptimizer
from cadence.optim.lion import Lion
from cadence.optim.noam import Noam
from cadence.optim.radam import RAdam
from cadence.optim.weight_decay import WeightDecay

__all__ = ["OPTIMIZERS", "AMSGrad", "AdaBelief", "Adam", "AdamWarmup", "AdamWarmupCosineDecay",
           "GenericAdaptiveOptimizer", "Lion", "Noam", "OptimizerConfig", "RAdam", "WeightDecay", "build_optimizer"]
