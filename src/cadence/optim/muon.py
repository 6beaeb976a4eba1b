r"""Muon: MomentUm Orthogonalized by Newton-Schulz.

Keller Jordan et al., *Muon: An optimizer for hidden layers in neural networks*, 2024
(kellerjordan.github.io/posts/muon). For a 2-D weight $W$ (a convolution's weight is
flattened to $[\text{out}, \text{in} \cdot k_h \cdot k_w]$), Muon takes SGD-momentum's update and
replaces it by the nearest semi-orthogonal matrix, $U V^\top$ of its SVD $U S V^\top$, which it
approximates with a few Newton-Schulz iterations:

$$
\begin{aligned}
B_t &\leftarrow \mu B_{t-1} + (1 - \mu) G_t \\
O_t &= \mathrm{NS}_5\big((1 - \mu) G_t + \mu B_t\big) \quad \text{(Nesterov; } \mathrm{NS}_5(B_t) \text{ without)} \\
W_t &\leftarrow W_{t-1}(1 - \eta\lambda) - \eta \sqrt{\max(1, \text{rows}/\text{cols})}\; O_t
\end{aligned}
$$

where $\mathrm{NS}_5$ normalises $X_0 = M / (\lVert M \rVert_F + 10^{-7})$ and iterates the quintic
$X \leftarrow a X + (b A + c A^2) X$, $A = X X^\top$, with $(a, b, c) = (3.4445, -4.7750, 2.0315)$,
chosen to drive every singular value into roughly $[0.7, 1.2]$ fast rather than exactly to 1.
The reference runs it in bfloat16 on GPUs (``ns_dtype``); on a CPU without bfloat16 matrix
units that is about 8x slower than float32 (measured here: 0.81 s against 0.10 s for one
$1536 \times 384$ iteration set), so by default CPU parameters iterate in float32.

The iteration needs the whole matrix: on sharded parameters (FSDP's DTensors) each rank
gathers $M$, iterates on it and keeps its own rows of $O_t$ (:func:`cadence.optim.sharded.on_whole`).

Muon updates weight matrices only. Embeddings, the output head, biases and gains train with
AdamW, as in the reference (``MuonWithAuxAdam``): one optimizer holds both kinds, as parameter
groups. A group with ``use_muon=True`` (the default) takes Muon's update and must hold only
parameters of 2 or more dimensions; a group with ``use_muon=False`` takes AdamW's, which is
:class:`~cadence.optim.adam.Adam`'s update (torch's textbook form) with decoupled weight decay,
from that group's own ``lr``, ``betas``, ``eps`` and ``weight_decay``: so ``betas`` and ``eps``
are AdamW's here as for every other optimizer, and Muon's own update has neither.
:func:`~cadence.optim.helpers.param_groups.muon_param_groups` builds the two kinds of groups
from a model.

An AdamW group that sets no ``lr`` of its own runs at ``adamw_lr``, and its ``lr_multiplier``
becomes ``adamw_lr / lr`` (times any it had): a schedule of ``lr``
(:class:`~cadence.optim.helpers.hyperparams_schedule.HyperParameterScheduler`, written in Muon's
rate) then moves both rates together, keeping their ratio.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from cadence.checks import check_number
from cadence.optim import sharded
from cadence.optim.adam import Adam
from cadence.optim.generic import GenericAdaptiveOptimizer, Params, adam_scalars, update_moment
from cadence.optim.weight_decay import WeightDecay

#: The quintic's coefficients $(a, b, c)$.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def default_ns_dtype(device: torch.device) -> torch.dtype:
    """The Newton-Schulz dtype when none is given: bfloat16 on accelerators (the reference's), float32 on CPUs."""
    return torch.float32 if device.type == "cpu" else torch.bfloat16


def newton_schulz(M: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    r"""$\mathrm{NS}_{\text{steps}}(M)$: an approximately semi-orthogonal matrix with $M$'s singular vectors."""
    a, b, c = NS_COEFFICIENTS
    X = M.to(dtype)
    transposed = M.size(-2) > M.size(-1)
    if transposed:
        X = X.mT
    # $X_0 = M / (\lVert M \rVert_F + 10^{-7})$: singular values at most 1
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        # $A = X X^\top$, $X \leftarrow a X + (b A + c A^2) X$
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return (X.mT if transposed else X).to(M.dtype)


class Muon(GenericAdaptiveOptimizer):
    """Muon for the groups with ``use_muon=True`` (the default; weight matrices only), AdamW for the others.

    * ``lr`` $\\eta$, ``momentum`` $\\mu$, ``nesterov``, ``ns_steps``: Muon's,
    * ``ns_dtype``: the dtype of the Newton-Schulz iteration (``None``: :func:`default_ns_dtype`),
    * ``betas``, ``eps``: AdamW's (the defaults of the ``use_muon=False`` groups),
    * ``adamw_lr``: the rate of the AdamW groups that set none (see the module docstring),
    * ``weight_decay`` $\\lambda$, for both kinds: a float is decoupled (as in the reference and
      ``torch.optim.Muon``); a :class:`~cadence.optim.weight_decay.WeightDecay` picks the strategy.
    """

    elementwise = False
    decoupled_weight_decay = True
    ranges = {"momentum": {"low": 0.0, "high": 1.0, "high_open": True}, "ns_steps": {"low": 1, "integer": True}}

    def __init__(self, params: Params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float | WeightDecay = 0.0, ns_dtype: torch.dtype | None = None, *,
                 adamw_lr: float = 3e-4, schedules: Mapping[str, Callable[[float], float]] | None = None):
        self.nesterov = bool(nesterov)
        self.ns_dtype = ns_dtype
        #: The rate of the AdamW groups that set none.
        self.adamw_lr = check_number("Muon", "adamw_lr", adamw_lr, low=0.0)
        defaults = {"momentum": momentum, "ns_steps": ns_steps, "use_muon": True}
        super().__init__(params, defaults, lr, betas, eps, weight_decay, schedules=schedules)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (see the template): a Muon group must hold matrices only; an AdamW group without an ``lr``
        of its own runs at ``adamw_lr``, scheduled with Muon's rate (see the module docstring)."""
        group = dict(param_group)
        if not group.get("use_muon", self.defaults["use_muon"]) and "lr" not in group:
            lr = self.defaults["lr"]
            if lr == 0 and self.adamw_lr != 0:
                raise ValueError(f"Muon: lr=0 with AdamW groups at adamw_lr={self.adamw_lr}: their rate is kept as "
                                 f"a multiple of lr (lr_multiplier = adamw_lr / lr) so that a schedule of lr moves "
                                 f"both; expected lr > 0, or an lr of their own in the AdamW groups")
            multiplier = group.get("lr_multiplier", 1.0)
            group["lr"] = self.adamw_lr * multiplier
            group["lr_multiplier"] = multiplier * (self.adamw_lr / lr if lr else 1.0)
        super().add_param_group(group)
        self._check_matrices(len(self.param_groups) - 1, self.param_groups[-1])

    @staticmethod
    def _check_matrices(g: int, group: dict[str, Any]) -> None:
        if not isinstance(group["use_muon"], bool):
            raise TypeError(f"Muon: use_muon={group['use_muon']!r} in group {g}; expected True (Muon's update, for "
                            f"weight matrices) or False (AdamW's)")
        if not group["use_muon"]:
            return
        names = group.get("names")
        for i, param in enumerate(group["params"]):
            if param.ndim < 2:
                which = repr(names[i]) if names else f"{i} of group {g}"
                raise ValueError(f"Muon: parameter {which} has shape {list(param.shape)}, and Muon updates weight "
                                 f"matrices (2 or more dimensions) only; expected it in a group with "
                                 f"use_muon=False, which AdamW updates (muon_param_groups(model) builds both kinds)")

    def init_state(self, state: dict[str, Any], group: dict[str, Any], param: torch.Tensor) -> None:
        """A momentum buffer $B$ in a Muon group; Adam's moments in an AdamW group."""
        state["step"] = 0
        for name in ("momentum_buffer",) if group["use_muon"] else Adam.state_names:
            state[name] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def step_param(self, state: dict[str, Any], group: dict[str, Any], grad: torch.Tensor,
                   param: torch.Tensor) -> None:
        """One Muon step in a Muon group, one AdamW step in an AdamW group."""
        state["step"] += 1
        if not group["use_muon"]:
            # AdamW: Adam's update, torch's textbook form, with the group's lr, betas, eps and (decoupled) decay
            Adam.update(param, grad, state["exp_avg"], state["exp_avg_sq"],
                        **adam_scalars(group, state["step"], folded=False), **self.weight_decay.scalars(group))
            return
        mu, eta = group["momentum"], group["lr"]
        # $W_{t-1} (1 - \eta \lambda)$, the decoupled decay (or, coupled, $G_t + \lambda W_{t-1}$)
        G = WeightDecay.apply(param, grad, **self.weight_decay.scalars(group))
        B = state["momentum_buffer"]
        # $B_t \leftarrow \mu B_{t-1} + (1 - \mu) G_t$
        update_moment(B, G, mu)
        # Nesterov: $(1 - \mu) G_t + \mu B_t$
        M = G.lerp(B, mu) if self.nesterov else B
        # $O_t = \mathrm{NS}_5(M)$ of the whole matrix (gathered when sharded; each rank keeps its shard of $O_t$)
        ns_dtype = self.ns_dtype or default_ns_dtype(param.device)
        O = sharded.on_whole(lambda M: newton_schulz(M.reshape(M.size(0), -1), group["ns_steps"], ns_dtype).view_as(M),
                             M)
        # $W_t \leftarrow W_{t-1}(1 - \eta \lambda) - \eta \sqrt{\max(1, \text{rows}/\text{cols})} O_t$
        rows, cols = param.size(0), param[0].numel()
        param.add_(O, alpha=-eta * max(1.0, rows / cols) ** 0.5)
