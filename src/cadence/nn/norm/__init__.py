"""Normalization layers, one module per paper."""

from cadence.nn.norm.batch_channel_norm import BatchChannelNorm, ChannelNorm, EstimatedBatchNorm
from cadence.nn.norm.batch_norm import BatchNorm
from cadence.nn.norm.deep_norm import DeepNorm, DeepNormBlock, deep_norm_constants
from cadence.nn.norm.group_norm import GroupNorm
from cadence.nn.norm.instance_norm import InstanceNorm
from cadence.nn.norm.layer_norm import LayerNorm
from cadence.nn.norm.rms_norm import RMSNorm
from cadence.nn.norm.weight_standardization import Conv2d, WeightStandardization, weight_standardization

__all__ = ["BatchChannelNorm", "BatchNorm", "ChannelNorm", "Conv2d", "DeepNorm", "DeepNormBlock", "EstimatedBatchNorm",
           "GroupNorm", "InstanceNorm", "LayerNorm", "RMSNorm", "WeightStandardization", "deep_norm_constants",
           "weight_standardization"]
