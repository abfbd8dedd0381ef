"""Shared pieces of the estimators that work on one-hot codes of factorial categorical latents (models with
the FACTORIAL_CATEGORICAL interface, ``models/protocols.py``: the GMM with D = 1, the categorical SBNs).

Notation: ℓ = log softmax of ``model.guide_logits(x)`` ``[R, B, D, C]`` (normalised log-probabilities of
q(z_d = c | x)); a one-hot code y ``[K, R, B, D, C]``; log q(y) = Σ_{d,c} y_dc ℓ_dc; f(y) =
``model.log_joint_onehot(x, y)`` − log q(y), the ELBO's integrand at y.  Every random tensor is drawn on
the logits' device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from estibench.models.protocols import FACTORIAL_CATEGORICAL

from .functional import straight_through

#: the latent kinds with a factorial categorical interface (GMM: "categorical"; categorical SBNs)
ONEHOT_LATENTS = frozenset({"categorical", "multicategorical"})
NEEDS = frozenset({FACTORIAL_CATEGORICAL})

__all__ = ["ONEHOT_LATENTS", "NEEDS", "log_probs", "gumbel_like", "onehot_sample", "log_q", "elbo_terms", "straight_through_elbo"]


def log_probs(model, x: torch.Tensor) -> torch.Tensor:
    """ℓ = log q(z_d = c | x), ``[R, B, D, C]``."""
    return torch.log_softmax(model.guide_logits(x), -1)


def gumbel_like(shape, like: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise −log(−log U), U clamped away from 0 and 1 (finite)."""
    tiny = torch.finfo(like.dtype).tiny
    u = torch.rand(shape, dtype=like.dtype, device=like.device).clamp_(min=tiny, max=1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def onehot_sample(ell: torch.Tensor, num_particles: int) -> torch.Tensor:
    """K one-hot draws y ~ q, ``[K, R, B, D, C]`` (no gradient): argmax of ℓ + Gumbel noise."""
    with torch.no_grad():
        g = gumbel_like((num_particles, *ell.shape), ell)
        return F.one_hot((ell + g).argmax(-1), ell.shape[-1]).to(ell.dtype)


def log_q(ell: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log q(y) = Σ_{d,c} y_dc ℓ_dc, ``[*particles, R, B]``."""
    return (y * ell).sum((-1, -2))


def elbo_terms(model, x: torch.Tensor, ell: torch.Tensor, y: torch.Tensor):
    """(log p_θ(x, y), log q_φ(y)) at one-hot codes y, each ``[*particles, R, B]``."""
    return model.log_joint_onehot(x, y), log_q(ell, y)


def straight_through_elbo(model, x: torch.Tensor, ell: torch.Tensor, y: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """The K-sample ELBO average mean_k f(y_k), ``[R, B]``, for the straight-through family (Gumbel-Rao, ZGR, GST,
    ReinMax): evaluated at y_st = y + soft − stopgrad(soft) (value: the hard one-hot y; backward: ``soft``'s
    Jacobian), with log q(y_st) = Σ y_st·ℓ and ℓ differentiated too.  So φ's gradient is the estimator's
    backward of ∂f/∂y = ∂ log p_θ(x, y)/∂y − ℓ, plus the direct score term −∇_φ log q(y) at fixed y (zero mean);
    θ's is mean_k ∇_θ log p_θ(x, y_k) at the hard y (unbiased for the ELBO's θ-gradient)."""
    y_st = straight_through(y, soft)
    log_p, lq = elbo_terms(model, x, ell, y_st)
    return (log_p - lq).mean(0)
