"""Multi-sample bounds and importance weights: the IWAE bound, self-normalised weights, VIMCO's leave-one-out
bounds and the wake-sleep family's wake-θ / wake-φ surrogates.

Everything here is a function of per-particle log-weights log w_k = log p(x, z_k) − log q(z_k | x) (or of log p and
log q separately), particles along dimension 0 (K); the bound is L̂ = log (1/K) Σ_k w_k (IWAE, Burda et al., 2016,
Eq. 8; RWS, Le et al., Eq. 1).  The registered ``iwae``, ``vimco``, ``ws``, ``ww``, ``dww``, ``rw+rws``,
``contrastive_rws`` (and the bound inside ``nvil`` and ``muprop``) call these functions, and
``estibench.grad(..., "vimco")`` calls :func:`vimco`.
"""
from __future__ import annotations

import math

import torch


def logmeanexp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/n) Σ exp x along ``dim``, stably (logsumexp − log n)."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def importance_bound(log_w: torch.Tensor) -> torch.Tensor:
    """The K-sample importance-weighted bound L̂ = log (1/K) Σ_k w_k (IWAE, Burda et al., 2016, Eq. 8; RWS Eq. 1),
    ``[K, ...]`` → ``[...]``.  With reparameterised z its gradient is IWAE's estimate (Burda et al., Eq. 14)."""
    return logmeanexp(log_w, 0)


def normalised_weights(log_w: torch.Tensor) -> torch.Tensor:
    """The self-normalised importance weights w̃_k = w_k / Σ_j w_j along dim 0, held constant (no gradient)."""
    return torch.softmax(log_w.detach(), dim=0)


def self_normalised(log_w: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Σ_k w̃_k log q(z_k | x) with w̃ = :func:`normalised_weights` (log_w): its φ-gradient is the wake-φ estimate
    of RWS (Le et al.) Eq. 5, Σ_k w̃_k ∇_φ log q_φ(z_k | x), a self-normalised estimate of ∇_φ −KL(p_θ(z|x) ‖ q_φ)
    (Eq. 4); ``log_w`` may come from another proposal (δ-WW's defensive mixture, §4.3).  ``[K, ...]`` → ``[...]``."""
    return (normalised_weights(log_w) * log_q).sum(0)


def wake_phi(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Wake-φ (RWS Eq. 5): :func:`self_normalised` with log w = log p − log q, ``[K, ...]`` → ``[...]``."""
    return self_normalised(log_p - log_q, log_q)


def wake_theta(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Wake-θ (RWS §3, the IWAE θ-gradient): log (1/K) Σ_k w_k with log q held fixed, so only θ (through log p)
    gets a gradient, Σ_k w̃_k ∇_θ log p_θ(x, z_k).  ``[K, ...]`` → ``[...]``."""
    return logmeanexp(log_p - log_q.detach(), 0)


def defensive_log_proposal(log_q: torch.Tensor, log_uniform: torch.Tensor, delta: float) -> torch.Tensor:
    """log q_{φ,δ}(z|x) = log[(1 − δ) q_φ(z|x) + δ u(z)] (δ-WW, RWS §4.3; Hesterberg, 1995), with q_φ held fixed
    (the weights it enters carry no gradient)."""
    return torch.logaddexp(math.log1p(-delta) + log_q.detach(), math.log(delta) + log_uniform)


def leave_one_out_bounds(log_w: torch.Tensor) -> torch.Tensor:
    """VIMCO's L̂_{−ℓ} for every ℓ, ``[K, ...]`` (Mnih & Rezende, 2016, Eq. 7 with the geometric mean; RWS §2.2):
    log (1/K) (exp((1/(K−1)) Σ_{k≠ℓ} log w_k) + Σ_{k≠ℓ} w_k), in log space.  K ≥ 2."""
    K = log_w.shape[0]
    others_mean = (log_w.sum(0, keepdim=True) - log_w) / (K - 1)
    eye = torch.eye(K, dtype=torch.bool, device=log_w.device).view(K, K, *([1] * (log_w.dim() - 1)))
    others = log_w.unsqueeze(0).expand(K, *log_w.shape).masked_fill(eye, -math.inf)
    return torch.logaddexp(torch.logsumexp(others, dim=1), others_mean) - math.log(K)


def vimco_signal(log_w: torch.Tensor, bound: torch.Tensor = None) -> torch.Tensor:
    """VIMCO's per-particle learning signal L̂ − L̂_{−ℓ}, ``[K, ...]``, held constant (``bound``: L̂ if already
    computed, :func:`importance_bound`)."""
    bound = importance_bound(log_w) if bound is None else bound
    return (bound.unsqueeze(0) - leave_one_out_bounds(log_w)).detach()


def vimco(log_w: torch.Tensor, log_q: torch.Tensor, bound: torch.Tensor = None) -> torch.Tensor:
    """VIMCO (Mnih & Rezende, 2016, Eq. 7 / §3; RWS §2.2's ĝ_VIMCO): the surrogate Σ_ℓ (L̂ − L̂_{−ℓ}) log q(z_ℓ) + L̂,
    whose gradient Σ_ℓ (L̂ − L̂_{−ℓ}) ∇ log q(z_ℓ) + ∇L̂ (∇L̂ at the fixed samples, through log w) is an unbiased
    estimate of ∇ E[L̂], the K-sample bound's gradient.  ``log_w``, ``log_q``: ``[K, ...]`` → ``[...]``; ``bound``:
    L̂ = :func:`importance_bound` (log_w) if already computed.  K ≥ 2."""
    bound = importance_bound(log_w) if bound is None else bound
    return (vimco_signal(log_w, bound) * log_q).sum(0) + bound


def direct_coefficient(log_w: torch.Tensor) -> torch.Tensor:
    """1/K − w̃_k, ``[K, ...]``, held constant: Σ_k (1/K − w̃_k) ∇_φ log q(z_k) is the direct part ∇_φ L̂ at fixed z
    (through −log q) plus (1/K) Σ_k ∇_φ log q(z_k), a term of zero mean; zero at K = 1 (:func:`direct_term`'s
    coefficient)."""
    K = log_w.shape[0]
    return 1.0 / K - torch.softmax(log_w.detach(), 0)


def direct_term(log_w: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Σ_k (1/K − w̃_k) log q_φ(z_k) (:func:`direct_coefficient`), ``[K, ...]`` → ``[...]``: its φ-gradient is the
    direct dependence ∇_φ log (1/K) Σ_k w_k at fixed z, minus (1/K) Σ_k ∇_φ log q(z_k), a term of zero mean; exactly
    zero at K = 1 (the ELBO's direct term −∇ log q has zero mean).  ARM's, NVIL's and MuProp's direct term."""
    return (direct_coefficient(log_w) * log_q).sum(0)
