"""Estimators that enumerate part of the sample space: IndeCateR (every category of every variable, at the samples)
and the unordered set estimator (a set of distinct states drawn without replacement, weighted by leave-one-out
ratios of set probabilities).  Categorical latents as normalised log-probabilities ℓ ``[*, D, C]`` (D variables of
C categories, ``*`` the items) and one-hot codes; particles lead.  The draws themselves (the samples of IndeCateR,
the stochastic beam search of the unordered set) are the caller's: nothing here is random.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# -- IndeCateR -------------------------------------------------------------------------------------------------------
def substituted(y: torch.Tensor) -> torch.Tensor:
    """Every single-variable substitution of one-hot codes y ``[*, D, C]``: ``[D, C, *, D, C]``, entry (d, c) being
    y with its row d replaced by e_c (IndeCateR's z_{d←c}; De Smet et al., 2023)."""
    D, C = y.shape[-2:]
    lead = y.dim() - 2
    eye_d = torch.eye(D, dtype=y.dtype, device=y.device)
    eye_c = torch.eye(C, dtype=y.dtype, device=y.device)
    row = eye_d.reshape(D, 1, *([1] * lead), D, 1)        # selects row d
    value = eye_c.reshape(1, C, *([1] * lead), 1, C)      # the code e_c
    return y * (1.0 - row) + row * value


def indecater(ell: torch.Tensor, f_substituted: torch.Tensor) -> torch.Tensor:
    """IndeCateR's score part (De Smet, Sansone & Zuidberg Dos Martires, 2023, the CatLog-derivative trick; the
    paper's estimator, Eq. numbers not verified; ``estimators/indecater.py``): Σ_d Σ_c q_dc · F̄_dc with
    F̄_dc = (1/K) Σ_k f(z^(k)_{d←c}) held fixed, whose gradient in ℓ ``[*, D, C]`` is Σ_d Σ_c ∇q_dc F̄_dc, the
    unbiased estimate of Σ_d E_z[Σ_c ∇q_d(c) f(z_{d←c})] = ∇_q E_q[f].  ``f_substituted`` ``[D, C, K, *]``: f at
    :func:`substituted` of K samples (no gradient needed; it is not differentiated).  Returns ``[*]``; add
    mean_k f(z_k) for f's own parameters."""
    fbar = f_substituted.mean(2).movedim((0, 1), (-2, -1))  # [*, D, C]
    return (ell.exp() * fbar).sum((-1, -2))


# -- the unordered set estimator -------------------------------------------------------------------------------------
def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − eˣ) for x ≤ 0 (−inf at 0), stable on both sides of −log 2."""
    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


@torch.no_grad()
def log_set_ratios(log_p: torch.Tensor, log_rest: torch.Tensor, nodes: int = 256, chunk: int = 32):
    """(log R(S, s) ``[K, *]``, log R^{D∖s}(S, s') ``[K, K, *]``) for sets of K states with log-probabilities
    ``log_p`` ``[K, *]`` and log q(D∖S) ``log_rest`` ``[*]``, through I(T) = ∫_0^1 Π_{t∈T} (1 − u^{a_t}) du,
    a_t = q(t)/q(D∖S) (``estimators/unordered_set.py``): log R = log I(S∖s) − log I(S), log R^{D∖s}(S, s') =
    log I(S∖{s, s'}) − log I(S∖s) (0 on the diagonal).  In float64; u = exp(−e^v), trapezoid rule in v on
    [−35 − max(0, log max a), log(60 + 3K)] per point, ``nodes`` nodes, summed ``chunk`` nodes at a time."""
    dtype = log_p.dtype
    lp, lr = log_p.double(), log_rest.double()
    K = lp.shape[0]
    log_a = lp - lr[None]                                                  # +inf when S is everything
    top = log_a.max(0).values.clamp(min=0.0, max=60.0)
    lo, hi = -35.0 - top, math.log(60.0 + 3 * K)
    steps = torch.linspace(0.0, 1.0, nodes, dtype=torch.float64, device=lp.device)
    log_h = torch.log((hi - lo) / (nodes - 1))
    acc_all = acc_one = acc_two = None
    eye = torch.eye(K, dtype=torch.bool, device=lp.device).reshape(K, K, *([1] * lr.dim()))
    for start in range(0, nodes, chunk):
        v = lo[None] + (hi - lo)[None] * steps[start:start + chunk].reshape(-1, *([1] * lr.dim()))  # [n, *]
        log_y = log_a[None] + v[:, None]                                   # log(a_t e^v), [n, K, *]
        # log(1 − e^{−y}): ≈ log y − y/2 for tiny y (finite), 0 for y = ∞
        L = torch.where(log_y < -20.0, log_y - 0.5 * torch.exp(log_y),
                        log1mexp(-torch.exp(log_y.clamp(max=700.0))))
        base = v - torch.exp(v)                                            # log(e^{−t} dt/dv), t = e^v
        total = L.sum(1)                                                   # [n, *]
        part_all = base + total
        part_one = (base + total)[:, None] - L                             # [n, K, *]
        part_two = part_one[:, :, None] - L[:, None]                       # [n, K, K, *]
        chunks = [torch.logsumexp(p, 0) for p in (part_all, part_one, part_two)]
        if acc_all is None:
            acc_all, acc_one, acc_two = chunks
        else:
            acc_all = torch.logaddexp(acc_all, chunks[0])
            acc_one = torch.logaddexp(acc_one, chunks[1])
            acc_two = torch.logaddexp(acc_two, chunks[2])
    log_i_all, log_i_one, log_i_two = acc_all + log_h, acc_one + log_h, acc_two + log_h
    log_r1 = log_i_one - log_i_all[None]
    log_r2 = torch.where(eye, torch.zeros_like(log_i_two), log_i_two - log_i_one[:, None])
    return log_r1.to(dtype), log_r2.to(dtype)


def log_rest_mass(ell: torch.Tensor, codes: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """log q(D∖S) ``[*]`` of a set of K states, codes ``[K, *, D]`` (indices) with log-probabilities ``log_p``
    ``[K, *]`` under ℓ ``[*, D, C]``: exact (log-sum-exp of the unselected categories) for D = 1, else
    log(1 − Σ_S q)."""
    D = ell.shape[-2]
    if D == 1:
        chosen = F.one_hot(codes[..., 0], ell.shape[-1]).amax(0).bool()  # [*, C]
        return torch.logsumexp(ell[..., 0, :].masked_fill(chosen, -math.inf), -1)
    return log1mexp(torch.logsumexp(log_p, 0).clamp(max=0.0))


def unordered_set(f: torch.Tensor, log_q: torch.Tensor, log_r1: torch.Tensor, log_r2: torch.Tensor,
                  own: torch.Tensor = None):
    """The unordered set estimator with its built-in baseline (Kool, van Hoof & Welling, 2020, e^US and e^USBL;
    Eq. numbers not verified; ``estimators/unordered_set.py``), for a set S of K distinct states (dim 0) with
    f values ``f`` ``[K, *]``, log q(s) ``log_q`` (with the distribution's graph) and the ratios of
    :func:`log_set_ratios`.  Returns (surrogate ``[*]``, estimate ``[*]``): the surrogate
    Σ_s q(s)R(S,s) [own(s) + log q(s)·(f(s) − Σ_{s'} q(s')R^{D∖s}(S,s') f(s'))] (f, q and R held in the
    coefficients), whose gradient is e^USBL of ∇ E_q[f] through log q plus e^US of ∇ own (``own``: the part of f
    to differentiate for f's own parameters, default ``f``); the estimate is e^US of E_q[f], Σ_s q(s)R(S,s) f(s)
    (no gradient).  Unbiased for K ≥ 2."""
    own = f if own is None else own
    f = f.detach()
    lq0 = log_q.detach()
    weight = torch.exp(lq0 + log_r1)                                   # q(s) R(S, s)
    baseline = (torch.exp(lq0[None] + log_r2) * f[None]).sum(1)        # [K, *]
    surrogate = (weight * (own + log_q * (f - baseline))).sum(0)
    return surrogate, (weight * f).sum(0)
