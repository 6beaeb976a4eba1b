"""Parameter groups: which parameters decay, and per-pattern learning-rate multipliers.

Weight decay pulls weights towards zero; on biases, normalization gains and embeddings it
only hurts (a gain pulled to 0 switches its channel off; a rare token's embedding shrinks
between its updates). The rule nanoGPT and timm use, and the default here: parameters with
fewer than 2 dimensions, and every parameter of an embedding or normalization layer, get no
weight decay; the rest get ``weight_decay``.

Patterns (``fnmatch`` globs on the full parameter name, ``"*.bias"``, ``"head.*"``) change
the rule: ``no_decay`` patterns add parameters to the no-decay set, ``decay`` patterns force
parameters to decay (they win over the default rule and over ``no_decay``).
``lr_multipliers`` map patterns to a factor of the learning rate, stored in the group as
``lr_multiplier`` (and applied to ``lr`` when ``lr`` is given; a
:class:`~cadence.optim.helpers.hyperparams_schedule.HyperParameterScheduler` applies it to
scheduled rates).

:func:`muon_param_groups` splits parameters, or such groups, into the two kinds
:class:`~cadence.optim.muon.Muon` takes: hidden weight matrices for Muon's update, the rest
for AdamW's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from cadence.checks import check_number

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
               *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))


def _is_exempt_module(module: nn.Module) -> bool:
    """Embeddings and normalization layers (torch's, and any class named ``*Norm``, such as cadence's)."""
    return (isinstance(module, (nn.Embedding, nn.EmbeddingBag, *_NORM_TYPES))
            or type(module).__name__.endswith("Norm"))


def param_groups(model: nn.Module, weight_decay: float, *, no_decay: Sequence[str] = (), decay: Sequence[str] = (),
                 lr_multipliers: Mapping[str, float] | None = None, lr: float | None = None) -> list[dict[str, Any]]:
    """Groups of ``model``'s trainable parameters for any ``torch.optim`` optimizer.

    Each group has ``params``, ``names``, ``weight_decay`` and ``lr_multiplier`` (and ``lr``
    when ``lr`` is given); parameters with the same settings share a group. A pattern that
    matches no parameter is an error (a typo would otherwise silently do nothing), as is a
    parameter matched by two ``lr_multipliers`` patterns.
    """
    weight_decay = check_number("param_groups", "weight_decay", weight_decay, low=0.0)
    multipliers = dict(lr_multipliers or {})
    for pattern, factor in multipliers.items():
        check_number("param_groups", f"lr_multipliers[{pattern!r}]", factor, low=0.0, low_open=True)
    exempt = {name for module_name, module in model.named_modules() if _is_exempt_module(module)
              for name, _ in _direct_parameters(module, module_name)}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names = [n for n, _ in named]
    for pattern in (*no_decay, *decay, *multipliers):
        if not any(fnmatchcase(n, pattern) for n in names):
            raise ValueError(f"parameter pattern {pattern!r} matches no parameter; names look like: "
                             f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}")
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, p in named:
        decays = p.ndim >= 2 and name not in exempt and not any(fnmatchcase(name, q) for q in no_decay)
        decays = decays or any(fnmatchcase(name, q) for q in decay)
        matched = [(q, f) for q, f in multipliers.items() if fnmatchcase(name, q)]
        if len({f for _, f in matched}) > 1:
            raise ValueError(f"parameter {name!r} matches lr_multipliers patterns with different factors: "
                             f"{', '.join(f'{q!r}: {f}' for q, f in matched)}")
        factor = matched[0][1] if matched else 1.0
        key = (weight_decay if decays else 0.0, factor)
        group = groups.setdefault(key, {"params": [], "names": [], "weight_decay": key[0], "lr_multiplier": factor,
                                        **({"lr": lr * factor} if lr is not None else {})})
        group["params"].append(p)
        group["names"].append(name)
    return list(groups.values())


def _direct_parameters(module: nn.Module, prefix: str):
    for name, p in module.named_parameters(recurse=False):
        yield (f"{prefix}.{name}" if prefix else name), p


def muon_param_groups(params: nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]],
                      model: nn.Module | None = None) -> list[dict[str, Any]]:
    """``params`` split into :class:`~cadence.optim.muon.Muon`'s groups (``use_muon=True``) and AdamW's
    (``use_muon=False``), as Keller Jordan's reference splits them:

    * AdamW: every parameter of fewer than 2 dimensions (biases, gains), and, where the model is
      known, the weights of its embeddings (``nn.Embedding``, ``nn.EmbeddingBag``) and of its output
      head: the model's last module with parameters of its own, when that is an ``nn.Linear`` (a
      classifier's last layer, a language model's projection to the vocabulary; a head tied to the
      embedding is the embedding's parameter);
    * Muon: every other parameter (the hidden weight matrices, convolutions' included).

    ``params`` is a model (its trainable parameters, and the model itself for the rule above),
    parameters, or parameter groups such as :func:`param_groups` returns: each group is split in
    two, each part keeping the group's other keys (``weight_decay``, ``lr_multiplier``, ``names``);
    a group that says ``use_muon`` itself is kept as it is. With groups or parameters, ``model`` tells the embeddings and the head apart; without it
    only the number of dimensions does.
    """
    if isinstance(params, nn.Module):
        model, params = params, [p for p in params.parameters() if p.requires_grad]
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    adamw = {id(p) for p in _embeddings_and_head(model)} if model is not None else set()
    split = []
    for group in groups:
        if "use_muon" in group:
            split.append(group)
            continue
        members = list(group["params"])
        for use_muon in (True, False):
            chosen = [i for i, p in enumerate(members) if (p.ndim >= 2 and id(p) not in adamw) == use_muon]
            if chosen:
                part = {**group, "params": [members[i] for i in chosen], "use_muon": use_muon}
                if "names" in group:
                    part["names"] = [group["names"][i] for i in chosen]
                split.append(part)
    return split


def _embeddings_and_head(model: nn.Module) -> list[torch.Tensor]:
    """The parameters of ``model``'s embeddings and of its output head (see :func:`muon_param_groups`)."""
    owners = [m for m in model.modules() if next(m.parameters(recurse=False), None) is not None]
    embeddings = [m for m in owners if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    head = owners[-1:] if owners and isinstance(owners[-1], nn.Linear) else []
    return [p for m in (*embeddings, *head) for p in m.parameters(recurse=False)]
