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

Muon is for hidden weight matrices; embeddings, the output head, biases and gains train with
AdamW (the ``use_muon`` flag of a group; by default parameters with ``ndim >= 2`` use Muon).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

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
    """Muon for the groups with ``use_muon`` (default: tensors with ``ndim >= 2``), AdamW for the others.

    * ``lr`` $\\eta$, ``momentum`` $\\mu$, ``nesterov``, ``ns_steps``: Muon's,
    * ``ns_dtype``: the dtype of the Newton-Schulz iteration (``None``: :func:`default_ns_dtype`),
    * ``weight_decay`` $\\lambda$, for both kinds: a float is decoupled (as in the reference and
      ``torch.optim.Muon``); a :class:`~cadence.optim.weight_decay.WeightDecay` picks the strategy,
    * ``adamw_lr``, ``adamw_betas``, ``adamw_eps``: the AdamW groups'.
    """

    elementwise = False
    decoupled_weight_decay = True
    ranges = {"momentum": {"low": 0.0, "high": 1.0, "high_open": True}, "ns_steps": {"low": 1, "integer": True},
              "adamw_lr": {"low": 0.0}}

    def __init__(self, params: Params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, adamw_lr: float = 3e-4, adamw_betas: tuple[float, float] = (0.9, 0.95),
                 adamw_eps: float = 1e-8, weight_decay: float | WeightDecay = 0.0,
                 ns_dtype: torch.dtype | None = None, *, schedules: Mapping[str, Callable[[float], float]] | None = None):
        self.nesterov = bool(nesterov)
        self.ns_dtype = ns_dtype
        defaults = {"momentum": momentum, "ns_steps": ns_steps, "adamw_lr": adamw_lr, "use_muon": None}
        super().__init__(params, defaults, lr, adamw_betas, adamw_eps, weight_decay, schedules=schedules)

    def _uses_muon(self, group: dict[str, Any], param: torch.Tensor) -> bool:
        return param.ndim >= 2 if group["use_muon"] is None else bool(group["use_muon"])

    def init_state(self, state: dict[str, Any], group: dict[str, Any], param: torch.Tensor) -> None:
        """A momentum buffer $B$ for Muon parameters; Adam's moments for the others."""
        state["step"] = 0
        names = ("momentum_buffer",) if self._uses_muon(group, param) else Adam.state_names
        for name in names:
            state[name] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def step_param(self, state: dict[str, Any], group: dict[str, Any], grad: torch.Tensor,
                   param: torch.Tensor) -> None:
        """One Muon step, or one AdamW step for a parameter outside Muon's groups."""
        state["step"] += 1
        if "momentum_buffer" not in state:
            # AdamW, torch's textbook update, at the rate ``adamw_lr``
            adamw = {**group, "lr": group["adamw_lr"]}
            Adam.update(param, grad, state["exp_avg"], state["exp_avg_sq"],
                        **adam_scalars(adamw, state["step"], folded=False), **self.weight_decay.scalars(adamw))
            return
        mu, eta = group["momentum"], group["lr"]
        # $W_{t-1} (1 - \eta \lambda)$, the decoupled decay (or, coupled, $G_t + \lambda W_{t-1}$)
        G = WeightDecay.apply(param, grad, **self.weight_decay.scalars(group))
        B = state["momentum_buffer"]
        # $B_t \leftarrow \mu B_{t-1} + (1 - \mu) G_t$
        update_moment(B, G, mu)
        # Nesterov: $(1 - \mu) G_t + \mu B_t$
        M = G.lerp(B, mu) if self.nesterov else B
        O = newton_schulz(M.reshape(M.size(0), -1), group["ns_steps"],
                          self.ns_dtype or default_ns_dtype(param.device)).view_as(param)
        # $W_t \leftarrow W_{t-1}(1 - \eta \lambda) - \eta \sqrt{\max(1, \text{rows}/\text{cols})} O_t$
        rows, cols = param.size(0), param[0].numel()
        param.add_(O, alpha=-eta * max(1.0, rows / cols) ** 0.5)
