"""Metrics: values accumulated over the batches of a phase, from declared, summable states.

:class:`Metric` is the base (``update`` / ``compute`` / ``reset``, states declared with
``add_state``, ``sync`` across processes, ``state_dict``); the trainer keeps one copy of each
metric per phase, and treats a ``torchmetrics.Metric`` the same way (:func:`sync_metric`
syncs either kind).
"""

from cadence.metrics.accuracy import Accuracy, AccuracyDirect, BinaryAccuracy
from cadence.metrics.base import Metric, sync_metric
from cadence.metrics.confusion import F1, ConfusionMatrix, Precision, Recall
from cadence.metrics.mean import Mean, MeanLoss
from cadence.metrics.perplexity import BitsPerCharacter, Perplexity

__all__ = ["Accuracy", "AccuracyDirect", "BinaryAccuracy", "BitsPerCharacter", "ConfusionMatrix", "F1", "Mean",
           "MeanLoss", "Metric", "Perplexity", "Precision", "Recall", "sync_metric"]
