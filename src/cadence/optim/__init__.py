"""Optimizers (each paper in its own module), weight-decay strategies and optimizer helpers."""

from cadence.optim.ada_belief import AdaBelief
from cadence.optim.adam import Adam
from cadence.optim.adam_fp16 import AdamFP16, GradScalerFP16
from cadence.optim.adam_warmup import AdamWarmup
from cadence.optim.adam_warmup_cosine_decay import AdamWarmupCosineDecay
from cadence.optim.amsgrad import AMSGrad
from cadence.optim.helpers.clip import clip_grad_norm, clip_grad_value
from cadence.optim.helpers.factory import (OPTIMIZERS, OptimizerConfig, OptimizerEntry, build_optimizer,
                                           build_schedules, optimizer_callbacks, reads_run_length)
from cadence.optim.helpers.hyperparams_schedule import HyperParameterScheduler, NoamOpt
from cadence.optim.helpers.param_groups import muon_param_groups, param_groups
from cadence.optim.generic import GenericAdaptiveOptimizer
from cadence.optim.lamb import LAMB
from cadence.optim.lion import Lion
from cadence.optim.muon import Muon
from cadence.optim.noam import Noam
from cadence.optim.radam import RAdam
from cadence.optim.sophia import HessianRefresh, Sophia, gnb_loss
from cadence.optim.weight_decay import WeightDecay

__all__ = ["OPTIMIZERS", "AMSGrad", "AdaBelief", "Adam", "AdamFP16", "AdamWarmup", "AdamWarmupCosineDecay",
           "GenericAdaptiveOptimizer", "GradScalerFP16", "HessianRefresh", "HyperParameterScheduler", "LAMB", "Lion",
           "Muon", "Noam", "NoamOpt", "OptimizerConfig", "OptimizerEntry", "RAdam", "Sophia", "WeightDecay",
           "build_optimizer", "build_schedules", "clip_grad_norm", "clip_grad_value", "gnb_loss", "muon_param_groups",
           "optimizer_callbacks", "param_groups", "reads_run_length"]
