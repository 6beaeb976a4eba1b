r"""A step masked on the device by a non-finite flag: torch's ``found_inf`` protocol.

A training loop that checks its gradients for non-finite values keeps the result on the
device, as a one-element float tensor $f$ (non-zero: something was not finite). Reading it on
the host before every step would make the host wait for the device; instead the loop hands it
to the optimizer, as ``torch.amp.GradScaler`` hands it to torch's fused optimizers: it sets
``optimizer.found_inf = f`` before ``optimizer.step()`` and deletes the attribute after.

The optimizer then takes its step as always and keeps, for every tensor $x$ it updates (the
parameter and each state tensor), the value from before the step wherever the flag is set:

$$
x \leftarrow \begin{cases} x_{\text{before}} & f \ne 0 \\ x_{\text{after}} & f = 0 \end{cases}
$$

elementwise on the device (``torch.where``), so that nothing non-finite lands in the
parameters or the state and nothing is read on the host. With $f = 0$ every tensor is
bit-identical to a step taken without the flag. On the fused path the selection is compiled
into the update's one loop (see :mod:`cadence.optim.fused`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def unless_found_inf(found_inf: torch.Tensor, tensors: Sequence[torch.Tensor], step: Callable[[], None]) -> None:
    r"""Run ``step``, which updates ``tensors`` in place, then give each back its value from before wherever
    ``found_inf`` $\ne 0$ (see the module docstring); no host read."""
    before = [x.clone() for x in tensors]
    step()
    skip = found_inf.reshape(()) != 0
    for x, x_before in zip(tensors, before):
        # $x \leftarrow x_{\text{before}}$ if $f \ne 0$, else $x_{\text{after}}$
        x.copy_(torch.where(skip, x_before, x))
