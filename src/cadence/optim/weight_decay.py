r"""Weight decay as a pluggable strategy of the adaptive optimizers.

Three ways to pull the parameters $\theta$ towards zero with coefficient $\lambda$
(the group's ``weight_decay``) and learning rate $\alpha$ (the group's ``lr``):

* **Coupled (L2 regularisation).** Add $\frac{\lambda}{2}\lVert\theta\rVert^2$ to the loss, that
  is $\lambda\theta$ to the gradient, before the optimizer's update sees it:
  $$g_t \leftarrow g_t + \lambda \theta_{t-1}$$
  This is what ``torch.optim.Adam(weight_decay=λ)`` does.
* **Decoupled** (Loshchilov & Hutter, *Decoupled Weight Decay Regularization*, ICLR 2019,
  arXiv:1711.05101). Shrink the parameters directly, outside the adaptive update:
  $$\theta_{t-1} \leftarrow \theta_{t-1}(1 - \alpha\lambda)$$
  This is ``torch.optim.AdamW``.
* **Decoupled, absolute.** The same shrink without the learning rate:
  $\theta_{t-1} \leftarrow \theta_{t-1}(1 - \lambda)$.

Every optimizer takes a ``WeightDecay``, or a float $\lambda$ with the meaning torch gives it
for that optimizer: coupled for the Adam family, as ``torch.optim.Adam(weight_decay=λ)``;
decoupled where the paper decouples it (Lion, Sophia, LAMB, Muon; see
:attr:`~cadence.optim.generic.GenericAdaptiveOptimizer.decoupled_weight_decay`).

The optimizer asks the strategy for the step's two scalars once per group
(:meth:`WeightDecay.scalars`) and applies them elementwise inside its update
(:meth:`WeightDecay.apply`), so the same code runs per parameter and fused.
"""

from __future__ import annotations

from typing import Any

import torch

from cadence.checks import check_number

Scalar = float | torch.Tensor


class WeightDecay:
    """Weight-decay strategy: coupled L2, decoupled, or decoupled absolute.

    Arguments keep labml_nn's names and defaults:

    * ``weight_decay`` is the coefficient $\\lambda \\ge 0$ (the default of every group;
      a group may set its own ``weight_decay``),
    * ``weight_decouple`` shrinks the parameters directly instead of adding to the gradient,
    * ``absolute`` (with ``weight_decouple``) shrinks by $\\lambda$ rather than $\\alpha\\lambda$.
    """

    def __init__(self, weight_decay: float = 0.0, weight_decouple: bool = True, absolute: bool = False):
        self.weight_decay = check_number("WeightDecay", "weight_decay", weight_decay, low=0.0)
        self.weight_decouple = bool(weight_decouple)
        self.absolute = bool(absolute)
        if absolute and not weight_decouple:
            raise ValueError("WeightDecay: absolute=True needs weight_decouple=True "
                             "(an absolute coefficient only applies to the decoupled shrink)")

    def defaults(self) -> dict[str, Any]:
        """The hyper-parameters this strategy adds to every parameter group."""
        return {"weight_decay": self.weight_decay}

    def scalars(self, group: dict[str, Any]) -> dict[str, float | None]:
        r"""The step's two scalars for ``group``: ``decay`` (the shrink) and ``l2`` (the gradient term).

        Decoupled: $\text{decay} = \alpha\lambda$ (or $\lambda$ when absolute). Coupled:
        $\text{l2} = \lambda$. A term that does not apply is ``None``, not 0, so that the update
        skips it: the fused path then compiles a loop without it instead of multiplying every
        element by 1 and adding 0 (about 8% of an Adam step).
        """
        lam = group["weight_decay"]
        if lam == 0:
            return {"decay": None, "l2": None}
        if not self.weight_decouple:
            return {"decay": None, "l2": lam}
        return {"decay": lam if self.absolute else group["lr"] * lam, "l2": None}

    @staticmethod
    def apply(param: torch.Tensor, grad: torch.Tensor, decay: Scalar | None, l2: Scalar | None) -> torch.Tensor:
        r"""Shrink ``param`` in place, $\theta \leftarrow \theta(1 - \text{decay})$, and return
        $g + \text{l2}\cdot\theta$ (a new tensor; ``param.grad`` is never modified). ``None`` skips a term.

        Plain-number ``l2`` (the per-parameter path) is added as ``torch.optim.Adam`` adds it; a
        tensor one (the fused path) in plain arithmetic: ``torch.compile`` (2.13) bakes a float64
        tensor passed as ``alpha=`` into its cached kernel as a constant.
        """
        if decay is not None:
            param.mul_(1 - decay)
        if l2 is None:
            return grad
        return grad + l2 * param if isinstance(l2, torch.Tensor) else grad.add(param, alpha=l2)

    def validate(self, where: str, group: dict[str, Any]) -> None:
        """Check the group's ``weight_decay`` (``where`` names the optimizer in the message)."""
        group["weight_decay"] = check_number(where, "weight_decay", group["weight_decay"], low=0.0)

    def __repr__(self) -> str:
        return (f"WeightDecay(weight_decay={self.weight_decay!r}, weight_decouple={self.weight_decouple!r}, "
                f"absolute={self.absolute!r})")
