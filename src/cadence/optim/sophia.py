r"""Sophia-G: a clipped second-order step with a cheap diagonal Hessian estimate.

Liu et al., *Sophia: A Scalable Stochastic Second-order Optimizer for Language Model
Pre-training*, ICLR 2024, arXiv:2305.14342, Algorithm 3, as labml_nn implements it.

Every step updates the gradient's EMA and moves each coordinate by its ratio to the
curvature, clipped so that no coordinate moves by more than $\eta$ (where the curvature is
tiny, negative or stale the step is sign-momentum):

$$
\begin{aligned}
m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
\theta_t &\leftarrow \theta_{t-1} - \eta \, \operatorname{sign}(m_t)
\min\left(\frac{\lvert m_t \rvert}{\rho \, h_t + \epsilon}, 1\right)
\end{aligned}
$$

Every $k$ steps (10 in the paper) :meth:`Sophia.update_hessian` refreshes the curvature EMA
with the Gauss-Newton-Bartlett estimator: sample labels $\hat{y}$ from the model's own
output distribution, take the gradient $\hat{g}$ of the mean loss on them over a batch of
$B$ examples, and

$$
h_t \leftarrow \beta_2 h_{t-k} + (1 - \beta_2) \, B \, \hat{g} \odot \hat{g} .
$$

:func:`gnb_loss` builds that loss; :class:`HessianRefresh`, the trainer callback that
:meth:`Sophia.callbacks` gives, takes that step on the training batch every
``hessian_interval`` ($k$) optimizer steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch

from cadence.checks import check_number
from cadence.optim.generic import GenericAdaptiveOptimizer, Params, update_moment
from cadence.optim.weight_decay import Scalar, WeightDecay


def gnb_loss(logits: torch.Tensor) -> torch.Tensor:
    r"""The Gauss-Newton-Bartlett loss: cross-entropy of ``logits`` ``[..., C]`` against labels sampled
    from $\operatorname{softmax}(\text{logits})$ (the model's own distribution), averaged over the batch."""
    logits = logits.reshape(-1, logits.size(-1))
    with torch.no_grad():
        sampled = torch.distributions.Categorical(logits=logits.float()).sample()
    return torch.nn.functional.cross_entropy(logits, sampled)


class Sophia(GenericAdaptiveOptimizer):
    """Sophia-G with labml_nn's arguments: ``lr`` $\\eta$, ``betas``, ``eps``, ``rho`` $\\rho$, ``weight_decay``
    (a float is decoupled, as in the paper), and ``hessian_interval`` $k$."""

    state_names = ("exp_avg", "hessian")
    decoupled_weight_decay = True
    ranges = {"rho": {"low": 0.0, "low_open": True}}

    def __init__(self, params: Params, lr: float = 1e-4, betas: tuple[float, float] = (0.965, 0.99),
                 eps: float = 1e-16, rho: float = 0.04, weight_decay: float | WeightDecay = 0.0, *,
                 hessian_interval: int = 10, schedules: Mapping[str, Callable[[float], float]] | None = None,
                 fused: bool = False):
        #: $k$: optimizer steps between refreshes of the curvature estimate.
        self.hessian_interval = check_number("Sophia", "hessian_interval", hessian_interval, low=1, integer=True)
        super().__init__(params, {"rho": rho}, lr, betas, eps, weight_decay, schedules=schedules, fused=fused)

    def callbacks(self) -> list[Any]:
        """The template's, and :class:`HessianRefresh` every ``hessian_interval`` steps."""
        return [*super().callbacks(), HessianRefresh(self.hessian_interval)]

    def scalars(self, group: dict[str, Any], step: int) -> dict[str, Any]:
        r"""$\eta, \beta_1, \rho, \epsilon$ and the weight-decay terms."""
        return {"lr": group["lr"], "beta1": group["betas"][0], "rho": group["rho"], "eps": group["eps"],
                **self.weight_decay.scalars(group)}

    @staticmethod
    def update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, h: torch.Tensor, *, lr: Scalar,
               beta1: Scalar, rho: Scalar, eps: Scalar, decay: Scalar, l2: Scalar) -> None:
        """One Sophia step, in place."""
        g = WeightDecay.apply(param, grad, decay, l2)
        # $m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t$
        update_moment(m, g, beta1)
        # $\min(\lvert m_t \rvert / (\rho h_t + \epsilon), 1)$
        ratio = (m.abs() / (rho * h + eps)).clamp_(max=1.0)
        # $\theta_t \leftarrow \theta_{t-1} - \eta \operatorname{sign}(m_t) \cdot \text{ratio}$
        param.sub_(m.sign().mul_(ratio).mul_(lr))

    @torch.no_grad()
    def update_hessian(self, batch_size: int) -> None:
        r"""$h \leftarrow \beta_2 h + (1 - \beta_2) B \hat{g} \odot \hat{g}$ from each parameter's ``.grad``
        (the gradient of :func:`gnb_loss`), with $B$ = ``batch_size``."""
        batch_size = check_number("Sophia.update_hessian", "batch_size", batch_size, low=1, integer=True)
        for group in self.param_groups:
            beta2 = group["betas"][1]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p, group)
                state["hessian"].mul_(beta2).addcmul_(p.grad, p.grad, value=(1 - beta2) * batch_size)


class _Trainer(Protocol):
    """What :class:`HessianRefresh` uses of a trainer (:class:`cadence.train.Trainer` has it)."""

    model: torch.nn.Module
    optimizer: Sophia
    global_step: int
    batch: Any

    def to_device(self, batch: Any) -> Any: ...


class HessianRefresh:
    r"""A trainer callback: every ``interval`` optimizer steps, refresh Sophia's curvature estimate on the batch just
    trained on, with the Gauss-Newton-Bartlett estimator.

    ``inputs(batch)`` gives the model's input from a batch (its first element by default). The
    loss is :func:`gnb_loss` of the model's output, a mean over its $B$ predictions (rows of
    the logits ``[..., C]``): $B$ weighs :meth:`Sophia.update_hessian`'s estimate.
    """

    def __init__(self, interval: int = 10, inputs: Callable[[Any], torch.Tensor] = lambda batch: batch[0]):
        self.interval = check_number("HessianRefresh", "interval", interval, low=1, integer=True)
        self.inputs = inputs

    def on_optimizer_step(self, trainer: _Trainer) -> None:
        """At every ``interval``-th step: the gradient of :func:`gnb_loss`, then :meth:`Sophia.update_hessian`."""
        if trainer.global_step % self.interval:
            return
        optimizer = trainer.optimizer
        optimizer.zero_grad()
        logits = trainer.model(trainer.to_device(self.inputs(trainer.batch)))
        gnb_loss(logits).backward()
        optimizer.update_hessian(logits.numel() // logits.size(-1))
        optimizer.zero_grad()
