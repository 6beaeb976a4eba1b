r"""Adam for half-precision models: FP32 moments and an FP32 master copy of every parameter.

A model kept in FP16 (or BF16) halves its memory and runs faster, but Adam cannot be done in
it: an update $\alpha \hat{m}_t / \sqrt{\hat{v}_t}$ of order $10^{-4}$ on a weight of order 1
falls below FP16's resolution ($\approx 10^{-3}$ near 1) and is lost, and $g_t^2$ under- or
overflows. As in mixed-precision training (Micikevicius et al., *Mixed Precision Training*,
ICLR 2018, arXiv:1710.03740), :class:`AdamFP16` keeps for each half-precision parameter
$\theta^{16}$ an FP32 master copy $\theta^{32}$ and FP32 moments, applies the Adam update
(:mod:`cadence.optim.adam`) to the master copy, and writes it back rounded:

$$
\theta^{32}_t \leftarrow \operatorname{Adam}\big(\theta^{32}_{t-1}, g^{32}_t\big), \qquad
\theta^{16}_t \leftarrow \operatorname{fp16}\big(\theta^{32}_t\big)
$$

Half-precision gradients underflow too, so the loss is multiplied by a scale $S$ before the
backward pass and the gradients divided by it, in FP32, before the update:
:class:`GradScalerFP16` does this (unscaling straight into FP32 gradients for the optimizer),
skips a step whose gradients are not finite and halves $S$, and doubles $S$ after
``growth_interval`` finite steps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import torch

from cadence.checks import check_number
from cadence.optim import sharded
from cadence.optim.adam import Adam
from cadence.optim.generic import GenericAdaptiveOptimizer, Params, adam_scalars
from cadence.optim.weight_decay import WeightDecay


class AdamFP16(GenericAdaptiveOptimizer):
    """Adam with FP32 state and an FP32 master copy of half-precision parameters (labml_nn's arguments,
    :class:`~cadence.optim.adam.Adam`'s but ``fused``)."""

    state_names = Adam.state_names
    #: Adam's update, applied to the FP32 master copy.
    update = staticmethod(Adam.update)

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float | WeightDecay = 0.0, optimized_update: bool = True, *,
                 schedules: Mapping[str, Callable[[float], float]] | None = None):
        self.optimized_update = bool(optimized_update)
        #: FP32 gradients left by :meth:`GradScalerFP16.unscale_`, used (once) instead of ``param.grad``.
        self.grad_fp32: dict[torch.Tensor, torch.Tensor] = {}
        super().__init__(params, {}, lr, betas, eps, weight_decay, schedules=schedules)

    def scalars(self, group: dict[str, Any], step: int) -> dict[str, Any]:
        """Adam's scalars (see :meth:`cadence.optim.adam.Adam.scalars`)."""
        return {**adam_scalars(group, step, self.optimized_update), **self.weight_decay.scalars(group)}

    def init_state(self, state: dict[str, Any], group: dict[str, Any], param: torch.Tensor) -> None:
        r"""Step 0, FP32 moments, and the FP32 master copy $\theta^{32}$ of ``param``."""
        state["step"] = 0
        for name in self.state_names:
            state[name] = torch.zeros_like(param, dtype=torch.float32, memory_format=torch.preserve_format)
        state["fp32_copy"] = param.detach().to(torch.float32, copy=True)

    def step_param(self, state: dict[str, Any], group: dict[str, Any], grad: torch.Tensor,
                   param: torch.Tensor) -> None:
        r"""Adam on $\theta^{32}$ with the FP32 gradient, then $\theta^{16} \leftarrow \operatorname{fp16}(\theta^{32})$."""
        grad32 = self.grad_fp32.pop(param, None)
        if grad32 is None:
            grad32 = grad.to(torch.float32)
        master = state["fp32_copy"]
        state["step"] += 1
        self.apply_update(master, grad32, *(state[name] for name in self.state_names),
                          **self.scalars(group, state["step"]))
        param.copy_(master)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state, keeping its FP32 tensors in FP32 (torch would cast them to the parameters' FP16)."""
        originals = {i: {k: v for k, v in s.items() if isinstance(v, torch.Tensor) and k != "step"}
                     for i, s in state_dict["state"].items()}
        super().load_state_dict(state_dict)
        saved_ids = itertools.chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = itertools.chain.from_iterable(g["params"] for g in self.param_groups)
        for i, p in zip(saved_ids, params):
            for name, value in originals.get(i, {}).items():
                self.state[p][name] = sharded.shard_like(p, value.to(device=p.device, dtype=torch.float32, copy=True))


class GradScalerFP16:
    """Loss scaling for half-precision gradients, unscaling into FP32 for :class:`AdamFP16`.

    ``scale(loss)`` before ``backward()``; then ``step(optimizer)`` (which unscales, checks
    for non-finite gradients and skips the step if any) and ``update()``.
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000):
        self.scale_value = check_number("GradScalerFP16", "init_scale", init_scale, low=0.0, low_open=True)
        self.growth_factor = check_number("GradScalerFP16", "growth_factor", growth_factor, low=1.0, low_open=True)
        self.backoff_factor = check_number("GradScalerFP16", "backoff_factor", backoff_factor, low=0.0, high=1.0,
                                           low_open=True, high_open=True)
        self.growth_interval = check_number("GradScalerFP16", "growth_interval", growth_interval, low=1, integer=True)
        self._growth_tracker = 0
        self._found_inf: bool | None = None

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` times the current scale $S$."""
        return loss * self.scale_value

    @torch.no_grad()
    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by $S$ in FP32 (kept in ``optimizer.grad_fp32`` for :class:`AdamFP16`,
        written back to ``.grad`` otherwise) and note whether any is not finite."""
        found_inf = torch.zeros((), dtype=torch.bool)
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad32 = p.grad.to(torch.float32) / self.scale_value
                # whole: under FSDP a rank sees its own shard, and every rank must skip alike
                found_inf |= ~sharded.whole(torch.isfinite(grad32).all()).cpu()
                if isinstance(optimizer, AdamFP16):
                    optimizer.grad_fp32[p] = grad32
                else:
                    p.grad.copy_(grad32)
        self._found_inf = bool(found_inf)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Unscale (if not done yet) and step, unless a gradient is not finite; return whether it stepped."""
        if self._found_inf is None:
            self.unscale_(optimizer)
        if self._found_inf:
            if isinstance(optimizer, AdamFP16):
                optimizer.grad_fp32.clear()
            return False
        optimizer.step()
        return True

    def update(self) -> None:
        """Halve $S$ after a skipped step; double it after ``growth_interval`` good steps in a row."""
        if self._found_inf:
            self.scale_value *= self.backoff_factor
            self._growth_tracker = 0
        else:
            self._growth_tracker += 1
            if self._growth_tracker == self.growth_interval:
                self.scale_value *= self.growth_factor
                self._growth_tracker = 0
        self._found_inf = None

    def state_dict(self) -> dict[str, Any]:
        """The scale and the count of good steps since it last changed."""
        return {"scale": self.scale_value, "growth_tracker": self._growth_tracker}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.scale_value = float(state["scale"])
        self._growth_tracker = int(state["growth_tracker"])
