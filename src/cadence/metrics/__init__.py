"""Metrics: values computed over the batches of an epoch, with a separate state per phase.

:class:`StateModule` is the per-phase state protocol and :class:`Metric` the base of
metrics; :class:`Accuracy` and :class:`MeanLoss` are the metrics.
"""

from cadence.metrics.accuracy import Accuracy, AccuracyState
from cadence.metrics.loss import MeanLoss, MeanLossState
from cadence.metrics.state import Metric, StateModule

__all__ = ["Accuracy", "AccuracyState", "MeanLoss", "MeanLossState", "Metric", "StateModule"]
