"""``cadence serve``: the run page, served from the run store, read-only (:mod:`cadence.serve.app`).

A small ASGI app (Starlette) run by uvicorn in the command's process. It reads the SQLite
database the trainer writes and costs a training run nothing.
"""

from cadence.serve.app import make_app
from cadence.serve.downsample import min_max

__all__ = ["make_app", "min_max"]
