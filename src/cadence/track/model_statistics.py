r"""Each layer's parameter norm, gradient norm and update-to-parameter ratio, as labml's model hooks recorded them.

For a layer $\ell$ (a module with parameters of its own; its children are layers of their
own) with parameters $\theta_\ell$, their gradients $g_\ell$ and an optimizer step that
changes them by $\Delta\theta_\ell = \theta_\ell' - \theta_\ell$, with every norm taken over
all of the layer's parameters at once (as if concatenated):

$$
\texttt{param\_norm} = \lVert \theta_\ell' \rVert_2, \qquad
\texttt{grad\_norm} = \lVert g_\ell \rVert_2, \qquad
\texttt{update\_ratio} = \frac{\lVert \Delta\theta_\ell \rVert_2}{\lVert \theta_\ell \rVert_2}.
$$

The update ratio is the step's size relative to the weights (around $10^{-3}$ in healthy
training, by the usual rule of thumb); a parameter that starts at zero gives ``inf``. The
gradient norm is of the gradients the step used: taken before the step, as the optimizer
(or ``zero_grad``) may change them. A parameter without a gradient counts as a zero one;
layers whose parameters are all frozen are left out.

Usage, every ``track_model_every`` steps (nothing runs in the others: free when off)::

    before = ModelSnapshot(model)                    # after backward, before the step
    optimizer.step()
    tracker.add(step, model_statistics(before, model))

The values are 0-d ``float32`` tensors on the parameters' device, keyed
``model.<layer>.param_norm``, ``.grad_norm`` and ``.update_ratio`` (the root module's own
parameters as layer ``_root``); the tracker reads them without a sync per step.
"""

from __future__ import annotations

import torch
from torch import nn


def _layers(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Each module with trainable parameters of its own, by name, with those parameters."""
    layers = {}
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            layers[name or "_root"] = params
    return layers


def _norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    r"""$\lVert (t_1, t_2, \ldots) \rVert_2$ over the tensors concatenated, in float32."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t, dtype=torch.float32) for t in tensors]))


class ModelSnapshot:
    """The parameters of ``model`` and the norms of their gradients, taken before an optimizer step.

    It holds a copy of every trainable parameter (the model's size in memory, until it is dropped).
    """

    @torch.no_grad()
    def __init__(self, model: nn.Module, prefix: str = "model"):
        #: The first part of every key.
        self.prefix = prefix
        layers = _layers(model)
        #: Each layer's parameters as they were.
        self.params: dict[str, list[torch.Tensor]] = {name: [p.detach().clone() for p in params]
                                                      for name, params in layers.items()}
        #: $\lVert g_\ell \rVert_2$ of each layer.
        self.grad_norms: dict[str, torch.Tensor] = {
            name: _norm([p.grad if p.grad is not None else torch.zeros((), device=p.device) for p in params])
            for name, params in layers.items()}


@torch.no_grad()
def model_statistics(before: ModelSnapshot, model: nn.Module) -> dict[str, torch.Tensor]:
    """``{"model.<layer>.param_norm" | ".grad_norm" | ".update_ratio": value}`` of the step taken on ``model``
    since ``before`` was taken (see the module docstring)."""
    layers = _layers(model)
    if list(layers) != list(before.params):
        raise ValueError(f"model_statistics: the model's layers {list(layers)} are not those of the snapshot "
                         f"{list(before.params)}; take the ModelSnapshot of this model before its step")
    values = {}
    for name, params in layers.items():
        old = before.params[name]
        key = f"{before.prefix}.{name}"
        values[f"{key}.param_norm"] = _norm(list(params))
        values[f"{key}.grad_norm"] = before.grad_norms[name]
        values[f"{key}.update_ratio"] = _norm([p - q for p, q in zip(params, old)]) / _norm(old)
    return values
