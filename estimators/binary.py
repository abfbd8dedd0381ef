"""Shared pieces of the estimators for Bernoulli latents (ARM, DisARM, ST, Gumbel-ST, NVIL, MuProp,
binary Concrete) on models with the layered Bernoulli interface (``models/protocols.py``
LAYERED_BERNOULLI, where the log-mass and the ancestral chain through the guide's layers live).

Notation: a_l = logits of q(z_l | z_{l−1}) (layer 0 is nearest x), ε = logit(u) with u ~ U(0, 1)
(standard logistic noise), so the hard sample z_l = 1[ε < a_l] ~ Bern(σ(a_l)) and its antithetic
partner 1[−ε < a_l] = 1[1 − u < σ(a_l)] are compared in logit space (no rounding of σ near 0 or 1).
Latents with K particles are ``[K, R, B, D_l]`` per layer; every random tensor is drawn on the
logits' device.
"""
from __future__ import annotations

import torch

from estibench.models.protocols import bernoulli_log_mass as log_mass
from estibench.models.protocols import guide_chain as chain

from .base import IncompatibleError, logmeanexp
from .functional import logit
from .functional.weights import direct_term

__all__ = ["log_mass", "chain", "uniform_like", "logit", "hard_sample", "direct_term", "relaxed_bound",
           "check_temperatures"]


def uniform_like(logits: torch.Tensor) -> torch.Tensor:
    return torch.rand(logits.shape, device=logits.device, dtype=logits.dtype)


def hard_sample(l: int, a: torch.Tensor) -> torch.Tensor:
    """z ~ Bern(σ(a)), no gradient."""
    return (logit(uniform_like(a)) < a.detach()).to(a.dtype)




def relaxed_bound(model, x, num_particles, draw, joint) -> torch.Tensor:
    """log (1/K) Σ_k p_θ(x, z̃_k) / q̃_φ(z̃_k|x) for a relaxed (or straight-through) chain: z̃ from
    :func:`chain`, log p = ``joint(x, z̃)``, log q̃ = Σ_l z̃_l·a_l − softplus(a_l).  ``[R, B]``."""
    logits, layers = chain(model, x, num_particles, draw)
    log_q = sum(log_mass(a, z) for a, z in zip(logits, layers))
    log_p = joint(x, model.join(layers))
    return logmeanexp(log_p - log_q, 0)


def check_temperatures(name: str, initial: float, final: float) -> None:
    if not (initial > 0 and final > 0):
        raise IncompatibleError(f"{name} needs positive temperatures, got {initial} → {final}")
