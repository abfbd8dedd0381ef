"""Score-function methods of :func:`estibench.grad`: REINFORCE, RLOO and VIMCO (baselines from the other particles)."""
from __future__ import annotations

from ..functional import rloo, score_function
from ..functional.weights import importance_bound, vimco

from .core import _ANY, Method, _evaluate, _log_prob, _sample


def _score(view, f, K):
    z = _sample(view, K)
    fz = _evaluate(f, z, K, view.batch)
    return score_function(fz, _log_prob(view, z)).mean(0), fz.detach().mean(0), z


def _rloo(view, f, K):
    z = _sample(view, K)
    fz = _evaluate(f, z, K, view.batch)
    return rloo(fz, _log_prob(view, z)), fz.detach().mean(0), z


def _vimco(view, f, K):
    """VIMCO (Mnih & Rezende, 2016; :func:`estimators.functional.weights.vimco`): f gives the per-particle log-weights
    log w(z_k) (e.g. log p(x, z_k) − log q(z_k)); the surrogate's gradient is an unbiased estimate of
    ∇ E[log (1/K) Σ_k exp f(z_k)], the K-sample bound, through q's parameters (the leave-one-out score term) and
    through f's own (at the fixed samples); ``value`` is that bound."""
    z = _sample(view, K)
    log_w = _evaluate(f, z, K, view.batch)
    bound = importance_bound(log_w)
    return vimco(log_w, _log_prob(view, z), bound), bound.detach(), z


#: the methods of this family, by their registry names
METHODS = (
    Method("reinforce", _ANY, lambda v, f, K: _score(v, f, K), {}, unbiased=True),
    Method("rloo", _ANY, lambda v, f, K: _rloo(v, f, K), {}, unbiased=True, particles=2, min_particles=2),
    Method("vimco", _ANY, lambda v, f, K: _vimco(v, f, K), {}, unbiased=True, particles=2, min_particles=2,
           objective="bound"),
)
