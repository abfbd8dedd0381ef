"""What every method of :func:`estibench.grad` shares: the returned :class:`GradEstimate`, the distribution as the
methods see it (:class:`_View`), f's evaluation with its shape check, and :class:`Method`, one offered estimator."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, OneHotCategorical

from ..base import IncompatibleError


@dataclass
class GradEstimate:
    """What :func:`grad` returns: ``surrogate`` ``[*batch]`` (its gradient is the estimate of ∇ E_q[f] per item),
    ``value`` ``[*batch]`` (mean_k f(z_k), no gradient; ``vimco``: the K-sample bound; ``unordered_set``: its unbiased
    set estimate of E[f]) and ``samples`` (the points f was evaluated at)."""

    surrogate: torch.Tensor
    value: torch.Tensor
    samples: object

    @property
    def loss(self) -> torch.Tensor:
        """−surrogate averaged over the items: a scalar to minimise."""
        return -self.surrogate.mean()

    def variance(self, parameters) -> torch.Tensor:
        """‖∇ loss‖² over ``parameters`` (the distribution's, e.g. the encoder's), differentiable (``create_graph``):
        the single-sample estimate of the gradient's second moment, whose gradient with respect to a control
        variate's parameters is that of the estimate's variance (its mean does not depend on them; RELAX,
        Grathwohl et al., 2018, Eq. 10).  Minimise it for the control variate's parameters only, e.g.
        ``cv_opt.zero_grad(); out.variance(encoder.parameters()).backward(inputs=list(cv.parameters()))``."""
        grads = torch.autograd.grad(self.loss, [p for p in parameters], create_graph=True, allow_unused=True)
        return sum((g ** 2).sum() for g in grads if g is not None)


@dataclass
class _View:
    kind: str  # "bernoulli", "categorical", "product" or "any"
    dist: object
    batch: Tuple[int, ...]
    logits: Optional[torch.Tensor] = None  # bernoulli: [*batch, *event]; categorical: normalised [*batch, *e, C]
    indices: bool = False  # categorical given as a Categorical (f gets one-hot codes from the relaxations)


def _view(dist) -> _View:
    if isinstance(dist, (tuple, list)):
        if not dist or not all(isinstance(d, Distribution) for d in dist):
            raise TypeError("estibench.grad: a product is a non-empty tuple of torch.distributions objects")
        batches = {tuple(d.batch_shape) for d in dist}
        if len(batches) != 1:
            raise ValueError(f"estibench.grad: the factors of a product need one batch shape, got {sorted(batches)}")
        return _View("product", tuple(dist), batches.pop())
    if not isinstance(dist, Distribution):
        raise TypeError(f"estibench.grad: dist must be a torch.distributions object (or a tuple of them), got "
                        f"{type(dist).__name__}")
    base = dist.base_dist if isinstance(dist, Independent) else dist
    batch = tuple(dist.batch_shape)
    if isinstance(base, Bernoulli):
        return _View("bernoulli", dist, batch, logits=base.logits)
    if isinstance(base, OneHotCategorical):
        return _View("categorical", dist, batch, logits=torch.log_softmax(base.logits, -1))
    if isinstance(base, Categorical):
        return _View("categorical", dist, batch, logits=torch.log_softmax(base.logits, -1), indices=True)
    return _View("any", dist, batch)


def _sample(view: _View, K: int):
    if view.kind == "product":
        return tuple(d.sample((K,)) for d in view.dist)
    return view.dist.sample((K,))


def _log_prob(view: _View, z) -> torch.Tensor:
    if view.kind == "product":
        return sum(d.log_prob(zi) for d, zi in zip(view.dist, z))
    return view.dist.log_prob(z)


def _evaluate(f: Callable, z, K: int, batch: Tuple[int, ...]) -> torch.Tensor:
    out = f(z)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (K, *batch):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"estibench.grad: f must return one value per particle and item, a tensor of shape "
                         f"[K, *batch] = {[K, *batch]}; got {got}")
    return out


@dataclass(frozen=True)
class Method:
    """One estimator offered by :func:`grad`: the distributions it takes (``kinds``), its particle count (default and
    least), its options with their defaults, whether it is unbiased and whether f gets relaxed values; ``run(view, f,
    K, **options)`` → (surrogate, value, samples)."""

    name: str
    kinds: frozenset
    run: Callable
    options: Dict[str, object]
    unbiased: bool
    relaxed: bool = False
    particles: int = 1
    min_particles: int = 1
    #: what the estimate is the gradient of: "expectation", ∇ E_q[f(z)] (``value``: mean_k f); "bound", f gives
    #: per-particle log-weights log w(z_k) and the estimate is of ∇ E[log (1/K) Σ_k exp f(z_k)], the K-sample bound
    #: (``value``: that bound)
    objective: str = "expectation"


def _variant(name, variant, variants):
    if variant not in variants:
        raise IncompatibleError(f"estibench.grad: {name!r} takes variant= {' or '.join(map(repr, variants))}, got "
                                f"{variant!r}")


def _positive(name: str, option: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < float("inf")):
        raise IncompatibleError(f"estibench.grad: {name!r} needs a finite positive {option}, got {value!r}")
    return float(value)


_ANY = frozenset({"bernoulli", "categorical", "product", "any"})


_BERNOULLI = frozenset({"bernoulli"})


_CATEGORICAL = frozenset({"categorical"})


_DISCRETE = frozenset({"bernoulli", "categorical"})
