"""Stacked (replicated) layers: ``R`` independent networks evaluated as one batched matmul.

Every parameter carries a leading replicate dimension, so summing the replicates' losses and
stepping an elementwise optimiser (Adam) trains ``R`` exactly independent networks.  Replicate
``r`` is initialised from its own seed, identically to a single network built with that seed.
"""
from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "elu": torch.nn.functional.elu}


def seeded_uniform(seeds: Sequence[int], shape, bound: float, salt: int) -> torch.Tensor:
    """``[R, *shape]`` draws from U(-bound, bound), replicate r from ``seeds[r]`` (CPU, then moved)."""
    out = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + salt)
        out.append((torch.rand(shape, generator=gen) * 2 - 1) * bound)
    return torch.stack(out)


class StackedLinear(nn.Module):
    """``y = x W + b`` per replicate; x is ``[R, ..., in]``.

    Initialised like ``torch.nn.Linear`` (U(±1/√in) for weight and bias), one seed per replicate.
    """

    def __init__(self, seeds: Sequence[int], in_features: int, out_features: int, salt: int = 0):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(seeded_uniform(seeds, (in_features, out_features), bound, 2 * salt))
        self.bias = nn.Parameter(seeded_uniform(seeds, (1, out_features), bound, 2 * salt + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(shape[0], -1, shape[-1])
        out = torch.baddbmm(self.bias, flat, self.weight)
        return out.reshape(*shape[:-1], out.shape[-1])


class StackedMLP(nn.Module):
    """An MLP ``sizes[0] → … → sizes[-1]`` with a nonlinearity between layers (none after the last)."""

    def __init__(self, seeds: Sequence[int], sizes: Sequence[int], activation: str = "tanh", salt: int = 0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.activation = ACTIVATIONS[activation]
        self.layers = nn.ModuleList(
            StackedLinear(seeds, a, b, salt=100 * salt + i) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.activation(x)
        return x


class StackedModule(nn.Module):
    """``R`` independent copies of any single-replicate module, stacked and evaluated with :func:`torch.func.vmap`.

    ``factory()`` builds one module.  Replicate ``r`` is built inside ``torch.random.fork_rng`` after
    ``torch.manual_seed(seeds[r])``, so it equals (parameters and buffers) ``factory()`` built right after
    ``torch.manual_seed(seeds[r])``, and the caller's global RNG state (CPU, and CUDA when available) is unchanged.

    Every parameter and buffer of the module becomes one tensor with a leading replicate dimension ``R``
    (:func:`torch.func.stack_module_state`): parameters live in :attr:`params` (an ``nn.ParameterDict``), buffers in
    :attr:`stacked_buffers`, under the module's own names with ``.`` replaced by ``__`` (``branch.0.weight`` →
    ``branch__0__weight``).  ``.parameters()`` therefore yields only the stacked tensors, and ``.to(device)`` moves
    them.  One stateless copy of the module on the ``meta`` device (not a submodule) supplies the code that
    :func:`torch.func.functional_call` runs.  As in :class:`StackedMLP`, summing the replicates' losses and stepping
    an elementwise optimiser (Adam) trains ``R`` exactly independent networks.

    ``forward(x, *args, **kwargs)``: ``x`` is ``[R, B, ...]``; replicate ``r`` computes ``module(x[r], ...)`` and the
    outputs (any nest of tensors: a tensor, a list, a tuple) come back stacked along a new leading dimension ``R``.
    Every *tensor* among ``args``/``kwargs`` (top level only) must also lead with ``R`` and is split the same way;
    anything else (``None``, numbers, strings, callables) is passed unchanged to every replicate.  Only ``forward``
    is vectorised: to call another method (e.g. ``log_prob``), wrap the module in one whose ``forward`` calls it.

    Limitations (``torch.func`` rules):

    * random operations (dropout in training mode) run under ``vmap(randomness=randomness)``, default
      ``"different"``: each replicate gets its own draws from the global RNG, which are *not* the draws the single
      module would make (the parameters still are); ``"same"`` shares one draw, ``"error"`` refuses random ops;
    * BatchNorm works in both modes: in training mode each replicate normalises over its own batch ``x[r]`` and
      updates its own slice of the stacked running statistics in place (the buffers are batched under ``vmap``,
      which its batching rule supports; checked against single modules in the tests).  ``train()``/``eval()`` on
      this wrapper also set the mode of the stateless copy, which is what decides the behaviour;
    * in-place updates by ``forward`` of an *unbatched* tensor with a batched one (a module writing a replicate-
      dependent value into a tensor it created itself) are refused by ``vmap``;
    * the module's forward must be ``vmap``-compatible (no ``.item()``, no data-dependent Python control flow).
    """

    def __init__(self, factory, seeds: Sequence[int], randomness: str = "different"):
        super().__init__()
        from torch.func import stack_module_state

        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("StackedModule needs at least one seed")
        if randomness not in ("error", "different", "same"):
            raise ValueError(f"randomness must be 'error', 'different' or 'same', got {randomness!r}")
        self.seeds = seeds
        self.randomness = randomness
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        modules = []
        for seed in seeds:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                modules.append(factory())
        first = modules[0]
        if not isinstance(first, nn.Module):
            raise ValueError(f"factory() must return an nn.Module, got {type(first).__name__}")
        layout = [(n, t.shape, t.dtype) for n, t in (*first.named_parameters(), *first.named_buffers())]
        for m in modules[1:]:
            if [(n, t.shape, t.dtype) for n, t in (*m.named_parameters(), *m.named_buffers())] != layout:
                raise ValueError("factory() built modules with different parameters or buffers for different seeds")
        params, buffers = stack_module_state(modules)
        names = list(params) + list(buffers)
        self._names = {n: n.replace(".", "__") for n in names}
        if len(set(self._names.values())) != len(names):
            raise ValueError("parameter/buffer names collide after replacing '.' with '__'")
        self.params = nn.ParameterDict(
            {self._names[n]: nn.Parameter(t.detach(), requires_grad=t.requires_grad) for n, t in params.items()})
        self.stacked_buffers = nn.Module()
        for n, t in buffers.items():
            self.stacked_buffers.register_buffer(self._names[n], t.detach())
        base = copy.deepcopy(first).to("meta")
        object.__setattr__(self, "_base", base)  # not a submodule: not in .parameters(), .to(), state_dict()
        self.train(first.training)

    @property
    def replicates(self) -> int:
        """R: the leading size of the stacked parameters (``len(seeds)`` when built; a model tiled for vectorised
        draws, ``harness.gradients.replicate``, tiles the parameters and so the replicates)."""
        first = next(iter(self.params.values()), None)
        return len(self.seeds) if first is None else first.shape[0]

    @property
    def base(self) -> nn.Module:
        """The stateless (``meta``) copy of the module whose code each replicate runs."""
        return self._base

    def train(self, mode: bool = True):
        super().train(mode)
        self._base.train(mode)
        return self

    def forward(self, x: torch.Tensor, *args, **kwargs):
        from torch.func import functional_call, vmap

        R = self.replicates
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] != R:
            raise ValueError(f"x must lead with the replicate dimension R={R}, got shape "
                             f"{tuple(getattr(x, 'shape', ()))}")
        t_args = {i: a for i, a in enumerate(args) if isinstance(a, torch.Tensor)}
        t_kwargs = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
        for where, t in [*((f"args[{i}]", a) for i, a in t_args.items()), *t_kwargs.items()]:
            if t.dim() < 1 or t.shape[0] != R:
                raise ValueError(f"tensor argument {where} must lead with the replicate dimension R={R}, "
                                 f"got shape {tuple(t.shape)}")
        base = self._base
        slots = self._slots()
        if R == 1 and self.randomness != "error" and slots is not None:
            # one replicate: the module itself on views of slice 0, put in place of its meta tensors for the call
            # (what functional_call does, without its per-call search of the module tree)
            views = self._single_views()
            call_args = tuple(a[0] if i in t_args else a for i, a in enumerate(args))
            call_kwargs = {k: (v[0] if k in t_kwargs else v) for k, v in kwargs.items()}
            saved = [table[attr] for table, attr in slots]
            try:
                for (table, attr), view in zip(slots, views):
                    table[attr] = view
                out = base(x[0], *call_args, **call_kwargs)
            finally:
                for (table, attr), meta in zip(slots, saved):
                    table[attr] = meta
            return torch.utils._pytree.tree_map(lambda t: t.unsqueeze(0) if isinstance(t, torch.Tensor) else t, out)
        params = {n: self.params[m] for n, m in self._names.items() if m in self.params}
        buffers = {n: getattr(self.stacked_buffers, m) for n, m in self._names.items() if m not in self.params}
        tie = slots is None  # tied weights: functional_call unties them (else skip its search for them)

        def one(p, b, xi, ta, tk):
            call_args = tuple(ta[i] if i in ta else a for i, a in enumerate(args))
            call_kwargs = {k: tk.get(k, v) for k, v in kwargs.items()}
            return functional_call(base, (p, b), (xi, *call_args), call_kwargs, tie_weights=tie)

        return vmap(one, randomness=self.randomness)(params, buffers, x, t_args, t_kwargs)

    def _slots(self):
        """(the table, the name) where the stateless module keeps each of its tensors (``_parameters`` or
        ``_buffers`` of the submodule that owns it), in the order of :attr:`_names`; None when the module ties
        weights (one tensor under several names: functional_call's untying is then needed).  Found once."""
        if "_slot_list" not in self.__dict__:
            base = self._base
            named = [n for n, _ in base.named_parameters(remove_duplicate=False)]
            named += [n for n, _ in base.named_buffers(remove_duplicate=False)]
            slots = None
            if sorted(named) == sorted(self._names):
                slots = []
                for full, stacked in self._names.items():
                    owner, _, attr = full.rpartition(".")
                    module = base.get_submodule(owner) if owner else base
                    slots.append((module._parameters if stacked in self.params else module._buffers, attr))
            self.__dict__["_slot_list"] = slots
        return self.__dict__["_slot_list"]

    def _single_views(self):
        """The one replicate's tensors as views ``t[0]`` of the stacked ones, in the order of :attr:`_names`; made
        once and reused while every stacked tensor (identity, version counter and storage) and the grad mode are
        unchanged, so that the many calls of one training step do not each slice every parameter."""
        key = (torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
               tuple((id(t), t._version, t.data_ptr()) for t in self.params.values()),
               tuple((id(t), t._version, t.data_ptr()) for t in self.stacked_buffers.buffers()))
        cached = self.__dict__.get("_views")
        if cached is not None and cached[0] == key:
            return cached[1]
        views = [(self.params[m] if m in self.params else getattr(self.stacked_buffers, m))[0]
                 for m in self._names.values()]
        self.__dict__["_views"] = (key, views)
        return views

    def __getstate__(self):
        state = dict(super().__getstate__())
        for cache in ("_views", "_slot_list"):  # caches (views, the stateless module's tables), not state
            state.pop(cache, None)
        return state
