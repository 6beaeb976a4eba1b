"""The optimizer helpers: the factory by name, parameter groups, hyper-parameter scheduling, clipping.

Import them from :mod:`cadence.optim` (``from cadence.optim import build_optimizer``) or from
their modules here. This file imports nothing: the optimizers' template uses
:mod:`cadence.optim.helpers.hyperparams_schedule`, and the factory imports the optimizers.
"""
