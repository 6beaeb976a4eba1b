r"""The fused fast path shared by the whole adaptive family.

Every optimizer of the family states its step as one elementwise function
``update(param, grad, *state, **scalars)``. The reference path calls it once per parameter
tensor; this module calls it once per *group*, on flat buffers:

* the parameters of a group (per device and dtype) are copied into one flat buffer and each
  parameter's ``.data`` becomes a view into it; likewise each ``.grad`` (autograd then
  accumulates gradients straight into the flat buffer) and each state tensor;
* the update is compiled once with ``torch.compile`` (dynamic shapes, so one compilation
  serves every group size) into a single loop over the buffer, and the step's float scalars
  are passed as 0-d tensors, so a changing learning rate or bias correction never
  recompiles. Boolean, integer and ``None`` scalars stay Python values: they select a branch
  of the update (RAdam's rectified or not, no weight decay), each branch compiled once.

Compilation takes seconds the first time and is cached on disk by PyTorch's Inductor
(``TORCHINDUCTOR_CACHE_DIR``, by default ``/tmp/torchinductor_<user>``) across runs; the
time spent is kept in :attr:`FusedStep.compile_seconds`. The compilation names the CPU vector
width Inductor generates code for (:func:`vector_width_option`), so that processes of different
vector ISAs sharing that cache (an AVX-512 CPU and ``ATEN_CPU_CAPABILITY=avx2``, say) never load
each other's code: Inductor's own cache key leaves the ISA out. Two things make the same function
run eagerly on the flat buffers instead, each after a warning, and :attr:`FusedStep.eager_runs`
counts those runs:

* compilation is unavailable (no C compiler, an unsupported platform): every variant of the
  update runs eagerly from then on;
* ``torch.compile`` has compiled as many variants of the update as it compiles of one
  function (``torch._dynamo.config.recompile_limit``, 8 by default; a sweep of many
  configurations in one process can get there). With ``fullgraph=True`` it then raises
  instead of compiling: the variant that asked runs eagerly from then on, and the variants
  compiled before stay compiled.

What can break the views is detected before each step: a ``.grad`` that is not the view
(``zero_grad(set_to_none=True)`` followed by a backward pass, a hook, DDP) is copied into
the flat buffer and re-attached; a parameter whose storage was replaced (``.to()``,
``param.data = ...``) makes the buffers be rebuilt from the parameters and their state.
A parameter whose ``.grad`` is ``None`` must be skipped, which a flat update cannot do: that
group then takes the reference path for the step.

Sharded parameters (DTensors, under FSDP2's ``fully_shard``; :mod:`cadence.optim.sharded`) put
each rank's shards in the buffers: the update is elementwise, so the shard of the update is the
update of the shards. Their states become DTensors over views of the buffers (no copy); their
parameters and gradients stay where FSDP keeps them, copied in before the update and the
parameters copied back after, since FSDP gathers each parameter from its own storage and
hands a new gradient at each backward pass.

A step given a non-finite flag ``found_inf`` (:mod:`cadence.optim.found_inf`) runs
:func:`masked` ``(update)``: the update, then the selection of the old values wherever the
flag is set, compiled together into the same one loop. Without the flag the step runs the
update alone, compiled as it always was: the flag costs nothing when unused.
"""

from __future__ import annotations

import logging
import time
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from cadence.optim import sharded
from cadence.optim.found_inf import unless_found_inf

logger = logging.getLogger(__name__)

_compiled: dict[Callable, Callable] = {}
_masked: dict[Callable, Callable] = {}
#: Updates that ``torch.compile`` cannot compile in this process: they run eagerly.
_compile_failed: set[Callable] = set()
#: The variants (device, dtype, state tensors, static scalars) of each update that came past
#: ``torch.compile``'s recompile limit in this process: they run eagerly.
_over_limit: dict[Callable, set[tuple[Any, ...]]] = {}


def recompile_limit() -> int:
    """How many variants of one function ``torch.compile`` compiles before it runs the rest eagerly."""
    config = torch._dynamo.config
    return getattr(config, "recompile_limit", getattr(config, "cache_size_limit", 8))


def past_recompile_limit(error: Exception) -> bool:
    """Whether ``error`` is ``torch.compile`` (``fullgraph=True``) refusing to compile past its recompile limit.

    The exception is ``torch._dynamo.exc.FailOnRecompileLimitHit`` (``FailOnCacheLimitHit`` before torch 2.6).
    """
    return type(error).__name__ in ("FailOnRecompileLimitHit", "FailOnCacheLimitHit")


def vector_width_option() -> dict[str, int]:
    """Inductor's option naming the vector width it generates CPU code for: ``{"cpp.simdlen": bits}``.

    Works around a torch bug (seen in 2.13): Inductor writes its C++ for the vector ISA it picks
    (AVX-512, AVX2, none; ``ATEN_CPU_CAPABILITY`` chooses among those the CPU has), but the key of
    its FX graph cache (``TORCHINDUCTOR_CACHE_DIR``) leaves that ISA out. A process picking
    another ISA than the one that filled the cache then loads C++ written for the other vector
    width and compiles it for its own: a loop written for 8 floats a vector (AVX2) and built with
    16-float vectors (AVX-512) stores 16 where it meant 8, overwriting the next elements and the
    heap; the other way round it leaves elements untouched; without vectors (``default``) it does
    not compile. Reproduction, in a fresh cache directory::

        f = torch.compile(lambda m, g, w: m.mul_(w).add_(g), dynamic=True)
        m = torch.ones(32); f(m, torch.arange(32.0), torch.tensor(0.5))  # m[i] = 0.5 + i
        # run once with ATEN_CPU_CAPABILITY=avx2, then on the same cache without it (an AVX-512 CPU):
        # m[8:16] = 8 .. 15 (0.5 too little), then "corrupted size vs. prev_size" at exit

    ``cpp.simdlen`` is part of that cache key, and Inductor picks the ISA of that width when it is
    set, so naming the width it would pick anyway compiles the same code under a key of its own.
    Empty where this torch has no such choice to name.
    """
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa
    except ImportError:
        return {}
    return {"cpp.simdlen": pick_vec_isa().bit_width()}


def compiled(update: Callable) -> Callable:
    """``torch.compile(update)`` with dynamic shapes, made once per function, for this process's vector ISA
    (:func:`vector_width_option`)."""
    if update not in _compiled:
        _compiled[update] = torch.compile(update, dynamic=True, fullgraph=True, options=vector_width_option())
    return _compiled[update]


def masked(update: Callable) -> Callable:
    """``update(param, grad, *state, **scalars)`` masked by a keyword ``found_inf``: parameter and state keep their
    values wherever it is non-zero (:func:`~cadence.optim.found_inf.unless_found_inf`), in one function that
    compiles to one loop. Made once per update."""
    if update not in _masked:
        def update_unless_found_inf(param: torch.Tensor, grad: torch.Tensor, *state: torch.Tensor,
                                    found_inf: torch.Tensor, **scalars: Any) -> None:
            unless_found_inf(found_inf, (param, *state), lambda: update(param, grad, *state, **scalars))

        # A code object of its own for each update: torch.compile keeps its compilations, and counts its recompile
        # limit, per code object; closures sharing one would share that limit across every optimizer.
        name = f"{update.__name__}_unless_found_inf"
        code = update_unless_found_inf.__code__.replace(co_name=name)
        function = types.FunctionType(code, update_unless_found_inf.__globals__, name, None,
                                      update_unless_found_inf.__closure__)
        function.__qualname__ = f"{update.__qualname__}_unless_found_inf"
        _masked[update] = function
    return _masked[update]


class FlatBuffers:
    """Parameters of one device and dtype, their gradients and their state as views into flat buffers.

    * ``params``: the parameters (all with a gradient, all on one device with one dtype),
    * ``states``: their optimizer states (dicts holding ``state_names`` tensors and ``step``),
    * ``state_names``: the state tensors to flatten.

    After construction ``param.data``, ``param.grad`` and ``state[name]`` of every
    parameter are views into :attr:`param`, :attr:`grad` and :attr:`state`.

    Sharded parameters (DTensors, :mod:`cadence.optim.sharded`) put this rank's shards in the
    buffers, and each ``state[name]`` becomes a DTensor over its view. Their parameters and
    gradients stay where FSDP keeps them (it gathers each parameter from its own storage and
    writes a new gradient at each backward pass): :meth:`load` copies them in before each
    update and :meth:`store` copies the parameters back after.
    """

    def __init__(self, params: Sequence[torch.Tensor], states: Sequence[dict[str, Any]],
                 state_names: Sequence[str]):
        first = sharded.local(params[0])
        total = sum(sharded.local(p).numel() for p in params)
        kwargs = {"dtype": first.dtype, "device": first.device}
        self.params = list(params)
        self.states = list(states)
        #: Whether the parameters are sharded (then copied in and out, see above).
        self.sharded = sharded.is_sharded(params[0])
        self.param = torch.empty(total, **kwargs)
        self.grad = torch.empty(total, **kwargs)
        self.state = {name: torch.empty(total, **kwargs) for name in state_names}
        self._param_ptrs: list[int] = []
        self._grad_views: list[torch.Tensor] = []
        self._views: list[slice] = []
        offset = 0
        for p, st in zip(self.params, self.states):
            shard = sharded.local(p)
            n = shard.numel()
            view = slice(offset, offset + n)
            self.param[view].copy_(shard.detach().reshape(-1))
            self.grad[view].copy_(sharded.local(p.grad).reshape(-1))
            for name in state_names:
                self.state[name][view].copy_(sharded.local(st[name]).reshape(-1))
                st[name] = sharded.like(p, self.state[name][view].view_as(shard))
            if not self.sharded:
                p.data = self.param[view].view_as(p)
                p.grad = self.grad[view].view_as(p)
            self._param_ptrs.append(sharded.local(p).data_ptr())
            self._grad_views.append(self.grad[view].view_as(shard))
            self._views.append(view)
            offset += n

    def attached(self) -> bool:
        """Whether every parameter's storage is still the flat buffer's, or, sharded, the same as at construction
        (else: rebuild)."""
        return all(sharded.local(p).data_ptr() == ptr for p, ptr in zip(self.params, self._param_ptrs))

    def gather_grads(self) -> bool:
        """Copy any gradient that is not the flat buffer's view into it and re-attach the view (sharded: copy every
        gradient's shard in).

        Returns ``False`` when a parameter has no gradient (it must be skipped this step).
        """
        for p, view in zip(self.params, self._grad_views):
            grad = p.grad
            if grad is None:
                return False
            if self.sharded:
                view.copy_(sharded.local(grad))
            elif grad.data_ptr() != view.data_ptr():
                view.copy_(grad)
                p.grad = view
        return True

    def load(self) -> None:
        """Sharded: copy each parameter's shard into the flat buffer (before an update)."""
        if self.sharded:
            for p, view in zip(self.params, self._views):
                self.param[view].copy_(sharded.local(p).reshape(-1))

    def store(self) -> None:
        """Sharded: copy the flat buffer back into each parameter's shard (after an update)."""
        if self.sharded:
            for p, view in zip(self.params, self._views):
                shard = sharded.local(p)
                shard.copy_(self.param[view].view_as(shard))

    def steps(self) -> set[int]:
        """The distinct step counts of the parameters (one, unless some were skipped before)."""
        return {st["step"] for st in self.states}


class CompileReport:
    """A trainer callback: says once, after the first optimizer step, how long the fused update took to compile."""

    def __init__(self, fused: FusedStep):
        self.fused = fused
        self.reported = False

    def on_optimizer_step(self, trainer: Any) -> None:
        """Log the compile time once it is known (``trainer.log``)."""
        if not self.reported and self.fused.compile_seconds > 0:
            self.reported = True
            trainer.log(f"fused optimizer step compiled in {self.fused.compile_seconds:.1f} s (kept in Inductor's "
                        f"cache for the next runs)")


class FusedStep:
    """Runs an optimizer's elementwise ``update`` once per flat buffer of each group.

    ``update`` is the optimizer's elementwise function; ``state_names`` its state tensors.
    The optimizer supplies, per group, the parameters with gradients and their states, and
    the step's scalars; :meth:`step` returns ``False`` for a group it cannot fuse this step
    (a parameter without gradient, parameters at different step counts), which the optimizer
    then steps with the reference path.
    """

    def __init__(self, update: Callable, state_names: Sequence[str]):
        self.update = update
        self.state_names = tuple(state_names)
        #: Seconds spent in first calls of the compiled update (compilation, or loading it from the cache).
        self.compile_seconds = 0.0
        #: Flat-buffer updates run by the compiled loop, and run eagerly (see the module docstring).
        self.compiled_runs = 0
        self.eager_runs = 0
        self._buffers: dict[int, list[FlatBuffers]] = {}
        self._scalars: dict[tuple[int, str], torch.Tensor] = {}
        self._warm: set[tuple[Callable, tuple[Any, ...]]] = set()

    def reset(self) -> None:
        """Forget the flat buffers (after a state dict was loaded): they are rebuilt at the next step."""
        self._buffers.clear()

    def step(self, group_index: int, params: Sequence[torch.Tensor], states: Sequence[dict[str, Any]],
             scalars: Callable[[int], dict[str, float]], found_inf: torch.Tensor | None = None) -> bool:
        """One fused step of group ``group_index``; ``scalars(step)`` gives the step's scalars; a ``found_inf``
        flag masks it (see the module docstring).

        Returns ``False`` (and changes nothing) when the group must take the reference path.
        """
        buffers = self._buffers.get(group_index)
        if buffers is None or not self._matches(buffers, params):
            if any(p.grad is None for p in params):
                return False
            buffers = self._build(params, states)
            self._buffers[group_index] = buffers
        for flat in buffers:
            if not flat.gather_grads() or len(flat.steps()) != 1:
                return False
        for flat in buffers:
            for st in flat.states:
                st["step"] += 1
            values = scalars(flat.states[0]["step"])
            flat.load()
            # Floats become 0-d tensors (new values, same kernel); bools and ints stay static (a branch of the update).
            self._run(flat, {name: self._scalar(flat, name, value) if isinstance(value, float) else value
                             for name, value in values.items()}, found_inf)
            flat.store()
        return True

    def zero_grads(self) -> set[int]:
        """Zero the flat gradient buffers in place, re-attaching their views; return the ids of their parameters
        (not of sharded ones, whose gradients are FSDP's: they are reset as asked)."""
        members = set()
        for buffers in self._buffers.values():
            for flat in buffers:
                if flat.sharded:
                    continue
                flat.grad.zero_()
                for p, view in zip(flat.params, flat._grad_views):
                    p.grad = view
                    members.add(id(p))
        return members

    @staticmethod
    def _matches(buffers: list[FlatBuffers], params: Sequence[torch.Tensor]) -> bool:
        members = {id(p) for flat in buffers for p in flat.params}
        return members == {id(p) for p in params} and all(flat.attached() for flat in buffers)

    def _build(self, params: Sequence[torch.Tensor], states: Sequence[dict[str, Any]]) -> list[FlatBuffers]:
        by_kind: dict[tuple[torch.device, torch.dtype, bool], tuple[list, list]] = {}
        for p, st in zip(params, states):
            ps, sts = by_kind.setdefault((p.device, p.dtype, sharded.is_sharded(p)), ([], []))
            ps.append(p)
            sts.append(st)
        return [FlatBuffers(ps, sts, self.state_names) for ps, sts in by_kind.values()]

    def _scalar(self, flat: FlatBuffers, name: str, value: float) -> torch.Tensor:
        # 0-d tensors keep their identity across steps, so the compiled code sees new values, not new constants.
        key = (id(flat), name)
        tensor = self._scalars.get(key)
        if tensor is None or tensor.device != flat.param.device:
            tensor = self._scalars[key] = torch.tensor(float(value), dtype=torch.float64, device=flat.param.device)
        else:
            tensor.fill_(value)
        return tensor

    def _run(self, flat: FlatBuffers, scalars: dict[str, Any], found_inf: torch.Tensor | None) -> None:
        args = (flat.param, flat.grad, *(flat.state[name] for name in self.state_names))
        update, kwargs = (self.update, scalars) if found_inf is None else (masked(self.update),
                                                                          {**scalars, "found_inf": found_inf})
        # One compilation per function (masked or not), device, dtype, number of state tensors and value of the
        # static (non-tensor) scalars.
        kind = (flat.param.device, flat.param.dtype, len(args),
                *sorted((k, v) for k, v in scalars.items() if not isinstance(v, torch.Tensor)))
        if self.update in _compile_failed or kind in _over_limit.get(update, ()):
            self._run_eagerly(update, args, kwargs)
            return
        start = time.perf_counter()
        try:
            compiled(update)(*args, **kwargs)
        except Exception as e:  # raised before the update ran: the same function, eagerly
            self._fall_back(update, e, kind)
            self._run_eagerly(update, args, kwargs)
            return
        self.compiled_runs += 1
        if (update, kind) not in self._warm:
            seconds = time.perf_counter() - start
            self.compile_seconds += seconds
            logger.info("compiled %s for %s in %.1f s", update.__qualname__, kind, seconds)
            self._warm.add((update, kind))

    def _run_eagerly(self, update: Callable, args: tuple[torch.Tensor, ...], kwargs: dict[str, Any]) -> None:
        update(*args, **kwargs)
        self.eager_runs += 1

    def _fall_back(self, update: Callable, error: Exception, kind: tuple[Any, ...]) -> None:
        """Record why ``kind`` of ``update`` (the optimizer's, or :func:`masked`) cannot run compiled, and say so."""
        name = update.__qualname__
        if past_recompile_limit(error):
            _over_limit.setdefault(update, set()).add(kind)
            warnings.warn(f"cadence: torch.compile has compiled as many variants of {name} as it compiles of one "
                          f"function (torch._dynamo.config.recompile_limit = {recompile_limit()}); this one "
                          f"{kind} (device, dtype, tensors, static scalars such as weight decay off) runs eagerly, "
                          f"about 2-3x slower. Raise the limit to compile it too.", RuntimeWarning, stacklevel=5)
            return
        _compile_failed.add(self.update)
        warnings.warn(f"cadence: torch.compile is unavailable for {name} ({type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}); the fused path runs eagerly instead",
                      RuntimeWarning, stacklevel=5)
