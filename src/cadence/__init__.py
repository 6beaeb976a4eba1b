"""cadence: the core utilities of a deep-learning training codebase.

Layers (imports only go down this list): ``schedule``, ``optim``, ``nn``, ``data``,
``metrics``, ``track``, ``train``, then ``config``, ``experiments`` and ``cli``.
"""

__version__ = "0.1.0"
