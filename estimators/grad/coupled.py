"""Coupled-sample methods of :func:`estibench.grad`: ARM, DisARM, ARMS (Bernoulli), CARMS and categorical DisARM."""
from __future__ import annotations

import torch

from ..arms import dirichlet_copula_logits
from ..base import IncompatibleError
from ..carms import carms_sample
from ..categorical_disarm import antithetic_pair
from ..functional import arm_logit_gradient, disarm_logit_gradient, logit
from ..functional.coupled import (ARMS_VARIANTS, CARMS_VARIANTS, CATEGORICAL_DISARM_VARIANTS, arms_debias_factor,
                                  arms_logit_gradient, carms_pair_ratio, carms_score, categorical_disarm_iw_score,
                                  categorical_disarm_sb_score, stick_breaking_categories, stick_breaking_logits)

from .core import _evaluate, Method, _BERNOULLI, _CATEGORICAL, _variant


def _antithetic(pair_gradient):
    def run(view, f, K):
        a = view.logits
        event = a.shape[len(view.batch):]
        flat = a.reshape(*view.batch, -1)
        flat_k = flat.expand(K, *flat.shape)
        u = torch.rand(flat_k.shape, dtype=a.dtype, device=a.device)
        eps = logit(u)
        b = (eps < flat_k.detach()).to(a.dtype)
        b_anti = (-eps < flat_k.detach()).to(a.dtype)
        z = b.reshape(K, *view.batch, *event)
        f_base = _evaluate(f, z, K, view.batch)
        with torch.no_grad():
            f_anti = _evaluate(f, b_anti.reshape(K, *view.batch, *event), K, view.batch)
            weight = pair_gradient(u, flat_k.detach(), b, b_anti, f_base.detach(), f_anti)
        return (weight * flat_k).sum(-1).mean(0) + f_base.mean(0), f_base.detach().mean(0), z
    return run


def _arm_weight(u, a, b, b_anti, f_base, f_anti):
    return arm_logit_gradient(u, f_base, f_anti)


def _disarm_weight(u, a, b, b_anti, f_base, f_anti):
    return disarm_logit_gradient(a, b, b_anti, f_base, f_anti)


def _arms(view, f, K, variant):
    """ARMS (Dimitriev & Zhou, 2021; ``estimators/arms.py``): K mutually antithetic Bernoulli samples from the
    Dirichlet copula (the registered estimator's draws, ``dirichlet_copula_logits``) and its logit gradient
    ĝ_a = 1/(K − 1) Σ_k (f_k − f̄)(z_k − σ(a))·p(1 − p)/(p − J), through a; plus ∇f at the samples (mean over K).
    ``variant``: ``paper`` (unbiased) or ``arms_code`` (the reference code's guarded factor, biased)."""
    _variant("arms", variant, ARMS_VARIANTS)
    a = view.logits
    event = a.shape[len(view.batch):]
    flat = a.reshape(*view.batch, -1)                                       # [*batch, D]
    b = (dirichlet_copula_logits(flat, K) < flat.detach()).to(a.dtype)     # [K, *batch, D]
    z = b.reshape(K, *view.batch, *event)
    fz = _evaluate(f, z, K, view.batch)
    g = arms_logit_gradient(fz.detach(), b, flat, arms_debias_factor(flat, K, variant))
    return fz.mean(0) + (g * flat).sum(-1), fz.detach().mean(0), z


def _categorical_flat(view, name):
    """ℓ ``[*batch, D, C]`` (the event's variables flattened to D), the event's variable shape, and a function
    turning category indices ``[n, *batch, D]`` into what f takes (indices for a Categorical, else one-hot codes)."""
    ell = view.logits
    C = ell.shape[-1]
    if C < 2:
        raise IncompatibleError(f"estibench.grad: {name!r} needs at least two categories, got {C}")
    event = ell.shape[len(view.batch):-1]
    flat = ell.reshape(*view.batch, -1, C)

    def to_f(index):
        index = index.reshape(index.shape[0], *view.batch, *event)
        return index if view.indices else torch.nn.functional.one_hot(index, C).to(ell.dtype)
    return flat, to_f


def _carms(view, f, K, variant):
    """CARMS (Dimitriev & Zhou, 2021; ``estimators/carms.py``): K coupled categorical samples (one random order of
    the categories per variable, Dirichlet-copula uniforms: the registered estimator's ``carms_sample``) and the
    score Σ_k ĝ_k·ℓ(z_k), ĝ = 1/(K(K − 1)) Σ_{j≠k} r(z_k, z_j)(f_k − f_j) with r = q q / Q; plus ∇f at the samples.
    ``variant``: ``exact`` (unbiased) or ``carms_code`` (the reference code's smoothed, clipped ratio, biased)."""
    _variant("carms", variant, CARMS_VARIANTS)
    ell, to_f = _categorical_flat(view, "carms")
    q = ell.detach().exp()
    z = carms_sample(q, K)                                                  # [K, *batch, D]
    y = torch.nn.functional.one_hot(z, ell.shape[-1]).to(ell.dtype)
    sample = to_f(z)
    fz = _evaluate(f, sample, K, view.batch)
    score = carms_score(fz.detach(), carms_pair_ratio(q, z, K, variant), (y * ell).sum(-1))
    return fz.mean(0) + score, fz.detach().mean(0), sample


def _categorical_disarm(view, f, K, variant):
    """Categorical DisARM (Dong, Mnih & Tucker, 2021; ``estimators/categorical_disarm.py``): K antithetic
    stick-breaking pairs over the categories in ascending order of probability (the registered estimator's
    ``antithetic_pair``); f is called once on the 2K points, ``[2K, *batch, *event]`` (the K first members, then
    their K partners), and the surrogate is the ``iw`` (importance-weighted, default) or ``sb`` (DisARM on the
    stick-breaking bits) score, both unbiased, plus ∇f at the 2K points (their mean)."""
    _variant("categorical_disarm", variant, CATEGORICAL_DISARM_VARIANTS)
    ell, to_f = _categorical_flat(view, "categorical_disarm")
    C = ell.shape[-1]
    order = torch.argsort(ell.detach(), -1)                                 # ascending probability
    lam = stick_breaking_logits(ell.gather(-1, order))                      # [*batch, D, C − 1]
    lam0 = lam.detach()
    b, bt, z, zt = antithetic_pair(lam0, K)
    cats = stick_breaking_categories(order, z, zt)                          # [2, K, *batch, D]
    sample = to_f(cats.reshape(2 * K, *cats.shape[2:]))
    fz = _evaluate(f, sample, 2 * K, view.batch)
    f0 = fz.detach()
    if variant == "iw":
        lq_d = (torch.nn.functional.one_hot(cats, C).to(ell.dtype) * ell).sum(-1)   # [2, K, *batch, D]
        score = categorical_disarm_iw_score(f0[:K], f0[K:], lam0, z, zt, lq_d[0], lq_d[1])
    else:
        score = categorical_disarm_sb_score(f0[:K], f0[K:], lam, b, bt, z, zt)
    return fz.mean(0) + score, fz.detach().mean(0), sample


#: the methods of this family, by their registry names
METHODS = (
    Method("arm", _BERNOULLI, _antithetic(_arm_weight), {}, unbiased=True),
    Method("disarm", _BERNOULLI, _antithetic(_disarm_weight), {}, unbiased=True),
    Method("arms", _BERNOULLI, _arms, {"variant": "paper"}, unbiased=True, particles=2, min_particles=2),
    Method("carms", _CATEGORICAL, _carms, {"variant": "exact"}, unbiased=True, particles=2, min_particles=2),
    Method("categorical_disarm", _CATEGORICAL, _categorical_disarm, {"variant": "iw"}, unbiased=True),
)
