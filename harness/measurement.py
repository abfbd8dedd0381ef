"""Measurement never changes what it measures.

Gradient draws at frozen parameters (a cell's evaluations, the gradient basket, ``estibench check`` and
``estibench screen``) run inside :func:`frozen`, which

* **snapshots and restores the state** of the model and of every estimator involved: every parameter and
  buffer (in place, so optimisers keep their references) and every plain attribute of every submodule
  (an exponential-moving-average baseline kept as a Python float, a step counter, ...).  An estimator that
  updates a baseline inside ``surrogate`` therefore trains exactly as if it had never been measured;
  ``estibench check`` still fails it (:func:`changed_state`), because its measured variance is then the
  variance of an estimator whose state moves while it is measured;
* **gives measurement its own random stream**: the global torch generators (the CPU's and the CUDA
  device's) are forked and seeded from ``seed``, so the training stream continues after a measurement
  exactly where it stopped, and a cell's trajectory does not depend on how often it is measured.

State a model declares as a cache that measurement refreshes (``LatentVariableModel.measurement_caches``,
e.g. the RBM-prior VAE's AIS estimate of log Z, read by objective values and by no gradient) is kept.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import nn


#: study options that only add measurements (the gradient basket, ``harness/basket.py``): they change neither a
#: cell's random stream (``Cell.rng_seed``) nor its trajectory, so reports neither split nor label cells by them
MEASUREMENT_OPTIONS = ("basket", "basket_samples")


def measurement_seed(base: int, *parts) -> int:
    """A 48-bit seed for a measurement stream, from a cell's training seed and what is measured (e.g. the
    iteration): independent of the training stream's position."""
    text = ":".join(str(p) for p in (int(base), "measure", *parts))
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def _plain(value) -> bool:
    """An attribute :class:`Snapshot` keeps by value: a number, string, bool or None, or a tuple, list or dict
    of such values (an EMA kept as a float, a step counter, a list of recent values).  Tensors are covered as
    parameters and buffers; other objects are not state the contract lets an estimator keep."""
    if value is None or isinstance(value, (bool, int, float, complex, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in value.items())
    return False


_SKIP = frozenset({"training", "_parameters", "_buffers", "_modules", "_non_persistent_buffers_set",
                   "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                   "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
                   "_load_state_dict_post_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                   "_forward_pre_hooks_with_kwargs", "_is_full_backward_hook", "_candidates"})


class Snapshot:
    """The state of one module tree: tensors (parameters and buffers, by qualified name) and plain attributes."""

    def __init__(self, module: nn.Module, keep: Iterable[str] = ()):
        self.module = module
        self.keep = frozenset(keep)
        self.tensors: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}
        self.attributes: Dict[Tuple[str, str], object] = {}
        self.prefixes = frozenset(prefix for prefix, _ in module.named_modules(remove_duplicate=True))
        for prefix, sub in module.named_modules(remove_duplicate=True):
            for name, t in list(sub._parameters.items()) + list(sub._buffers.items()):
                qual = f"{prefix}.{name}" if prefix else name
                if t is None or qual in self.keep:
                    continue
                self.tensors[qual] = (t, t.detach().clone())
            for name, value in vars(sub).items():
                if name in _SKIP or not _plain(value):
                    continue
                self.attributes[(prefix, name)] = copy.deepcopy(value)

    def changes(self) -> List[str]:
        """The names of the tensors and attributes that differ from the snapshot (tensors by value and shape)."""
        out = []
        for qual, (live, saved) in self.tensors.items():
            if live.shape != saved.shape or not torch.equal(live.detach(), saved):
                out.append(qual)
        modules = dict(self.module.named_modules(remove_duplicate=True))
        for (prefix, name), saved in self.attributes.items():
            sub = modules.get(prefix)
            live = vars(sub).get(name, _MISSING) if sub is not None else _MISSING
            if live is _MISSING or not _same(live, saved):
                out.append(f"{prefix}.{name}" if prefix else name)
        out += [f"{prefix}.{name}" if prefix else name for prefix, name in self._added(modules)]
        return out

    def _added(self, modules) -> List[Tuple[str, str]]:
        """Plain attributes that did not exist at the snapshot (a baseline created lazily by ``surrogate``)."""
        return [(prefix, name) for prefix, sub in modules.items() for name, value in vars(sub).items()
                if name not in _SKIP and (prefix, name) not in self.attributes and _plain(value)
                and prefix in self.prefixes]

    @torch.no_grad()
    def restore(self) -> None:
        """Put back every tensor that changed (in place where its shape is unchanged, so optimisers and views
        keep their references) and every plain attribute that changed."""
        for live, saved in self.tensors.values():
            if live.shape != saved.shape:
                live.data = saved.clone()
            elif not torch.equal(live.detach(), saved):
                live.copy_(saved)
        modules = dict(self.module.named_modules(remove_duplicate=True))
        for (prefix, name), saved in self.attributes.items():
            sub = modules.get(prefix)
            if sub is not None and not _same(vars(sub).get(name, _MISSING), saved):
                object.__setattr__(sub, name, copy.deepcopy(saved))
        for prefix, name in self._added(modules):
            delattr(modules[prefix], name)


_MISSING = object()


def _same(a, b) -> bool:
    """Equal plain values; NaN equals NaN (an EMA that is NaN before and after has not changed)."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _devices(modules) -> List[torch.device]:
    found = []
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            if t.device.type == "cuda" and t.device not in found:
                found.append(t.device)
            break
    return found


@contextlib.contextmanager
def frozen(model: Optional[nn.Module], *estimators: Optional[nn.Module], seed: Optional[int] = None
           ) -> Iterator[None]:
    """Run the block as a measurement of ``model`` and ``estimators`` (``None`` entries are ignored): their
    state is restored afterwards, except the model's declared ``measurement_caches``, and the block draws from
    its own random stream, seeded by ``seed`` (``None``: a fork of the current stream; the caller's stream is
    left where it was either way)."""
    keep = tuple(model.measurement_caches) if model is not None else ()
    mods = [m for m in (model, *estimators) if m is not None]
    snaps = [Snapshot(m, keep if m is model else ()) for m in mods]
    with torch.random.fork_rng(devices=_devices(mods)):
        if seed is not None:
            torch.manual_seed(int(seed))
        try:
            yield
        finally:
            for s in snaps:
                s.restore()


def changed_state(estimator: nn.Module, measure) -> List[str]:
    """Run ``measure()`` (a measurement through the estimator: gradient draws with ``with_own=False``) on the
    live estimator and return the names of its parameters, buffers and plain attributes that changed, then
    restore them.  Empty for an estimator that keeps its state under measurement."""
    snap = Snapshot(estimator)
    try:
        measure()
        return snap.changes()
    finally:
        snap.restore()


__all__ = ["MEASUREMENT_OPTIONS", "frozen", "changed_state", "measurement_seed", "Snapshot"]
