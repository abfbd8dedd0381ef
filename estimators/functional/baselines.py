"""Score-function estimators with a learnt baseline: NVIL's centred, variance-normalised learning signal (Mnih &
Gregor, 2014) and MuProp's first-order Taylor control variate (Gu et al., 2016).

Functions of the learning signal ℓ (the K-sample bound L̂ of the log-weights), the baseline's outputs, log q and the
Taylor expansion's value and slope; the baseline networks and running statistics live in the registered estimators
(``estimators/nvil.py``, ``estimators/muprop.py``), which call these functions.  Shapes: particles lead (K), items
``[...]``; MuProp's layer values have one trailing bit dimension D.
"""
from __future__ import annotations

import torch

from .weights import direct_term


def centred_signal(signal: torch.Tensor, baseline: torch.Tensor, running_mean: torch.Tensor = None) -> torch.Tensor:
    """NVIL's centred learning signal ℓ − c − C_ψ(x) (Mnih & Gregor, 2014, §3.1–3.2: c the running mean of ℓ, None
    to leave it out as the REBAR code does; C_ψ(x) the input-dependent baseline, with its gradient so that
    (ℓ − c − C_ψ(x))² trains ψ)."""
    if running_mean is None:
        return signal - baseline
    return signal - running_mean - baseline


def variance_scale(mean_square: torch.Tensor) -> torch.Tensor:
    """NVIL's variance normalisation (Mnih & Gregor, 2014, §3.3): max(1, √v), v the running mean square of the
    centred signal."""
    return mean_square.sqrt().clamp_min(1.0)


def nvil(centred: torch.Tensor, scale, log_w: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """NVIL's φ-surrogate (Mnih & Gregor, 2014, §3, Eq. 9 with the signal of :func:`centred_signal`), for the
    K-sample bound L̂ of ``log_w``: [stop(ℓ − c − C_ψ) · Σ_k log q(z_k) + Σ_k (1/K − w̃_k) log q(z_k)] / scale.  The
    second term (:func:`~estimators.functional.weights.direct_term`) is ∇_φ L̂ at fixed z up to a zero-mean
    term (zero at K = 1).  ``centred``, ``scale``: ``[...]`` (``scale`` 1 without normalisation); ``log_w``,
    ``log_q``: ``[K, ...]``.  Unbiased for ∇_φ E[L̂] for every baseline (up to the positive factor 1/scale)."""
    return (centred.detach() * log_q.sum(0) + direct_term(log_w, log_q)) / scale


def taylor_residual(signal: torch.Tensor, value: torch.Tensor, slope: torch.Tensor, z: torch.Tensor,
                    mean: torch.Tensor) -> torch.Tensor:
    """MuProp's residual ℓ − h(z) (Gu et al., 2016, §3, Eq. 5–6): h(z) = f(z̄) + f'(z̄)ᵀ(z − z̄), the first-order
    Taylor expansion of f around the mean-field point z̄ (``value`` f(z̄) ``[...]``, ``slope`` f'(z̄) and ``z`` ``[K,
    ..., D]``, ``mean`` z̄ held fixed), summed over the particles and bits."""
    return signal - value - (slope * (z - mean.detach())).sum((0, -1))


def taylor_mean(slope: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """MuProp's analytic term f'(z̄)ᵀ E_q[z] (Gu et al., 2016, Eq. 6): its gradient, f'ᵀ ∇_φ σ(a), restores the mean
    of the control variate the residual subtracts."""
    return (slope * mean).sum((0, -1))


def muprop_layer(centred: torch.Tensor, scale, analytic: torch.Tensor, coefficient: torch.Tensor,
                 log_q: torch.Tensor) -> torch.Tensor:
    """MuProp's φ-surrogate for one stochastic layer (Gu et al., 2016, §3 and Algorithm 1): [stop(ℓ − h − c − C_ψ)
    · Σ_k log q(z_k) + f'ᵀ σ(a) + Σ_k (1/K − w̃_k) log q(z_k)] / scale, with ``centred`` the centred residual
    (:func:`taylor_residual`, :func:`centred_signal`), ``analytic`` :func:`taylor_mean`, ``coefficient``
    :func:`~estimators.functional.weights.direct_coefficient` and ``log_q`` the layer's ``[K, ...]``.  Unbiased for
    every expansion point and baseline."""
    score = centred.detach() * log_q.sum(0)
    direct = (coefficient * log_q).sum(0)
    return (score + analytic + direct) / scale
