"""ZGR: the zero-temperature limit of Gumbel-Rao (Paulus et al., 2021), ½(ST + DARN), for factorial categorical
latents and for layered Bernoulli latents (Shekhovtsov, 2023).

The paper: Shekhovtsov, "Cold Analysis of Rao-Blackwellized Straight-Through Gumbel-Softmax Gradient
Estimator", ICML 2023: the Gumbel-Rao estimator has a closed-form limit as τ → 0, ZGR, the average of the
straight-through (ST) estimator and the DARN estimator (abstract; Equation numbers not verified: the paper's text
past its abstract was not available here).  With p = softmax(θ), D the one-hot sample and g = ∂f/∂D:
    ST:    J_p g = p ⊙ g − p (p·g)            (∂D/∂θ := ∂p/∂θ),
    DARN:  (g·(D − p)) ∇_θ log p_D,
    ZGR:   ½ (ST + DARN),  i.e. ∂f/∂θ_c = ½ p_c (g_c − g_D) for c ≠ D (and minus their sum at c = D).
Binary latents: ZGR is DARN(½), ∂z/∂a := ½ (z (1 − σ(a)) + (1 − z) σ(a)).

The reference code: github shekhovt/ZGR ``zgr.py``: ``ZGR`` as the surrogate
D + (dx − stopgrad(dx)), dx = ½ (p + (D − stopgrad(p)) log p_D); a custom backward ``ZGR_Function`` "according
to equation (50)" (its comment; the same numbers, checked here algebraically: both give the per-coordinate form
above); ``ZGR_binary`` for Bernoulli.  Paper and code agree as far as was checked; no variants.

This file: the code's surrogate form, written anew.  Categorical (:class:`ZgrCategorical`, the
FACTORIAL_CATEGORICAL interface): the K-sample ELBO average at the hard one-hot codes with the ZGR backward for φ
(estimators/onehot.py ``straight_through_elbo``: log q straight-through too, plus its zero-mean direct score
term).  Bernoulli (:class:`ZgrBernoulli`, LAYERED_BERNOULLI): the ancestral chain of the guide's layers, each
z_l = b + stopgrad(J)·(a_l − stopgrad(a_l)), layer l's z feeding guide_layer(l + 1, ·); the K-sample ELBO average
mean_k [log p_θ(x, z_k) − Σ_l log Bern(z_l; σ(a_l))] at those z.  Registered under one name,
``one_of(ZgrCategorical, ZgrBernoulli)``.  Both target the ELBO (guide and generative).  No temperature
(τ = 0 by construction).  Biased.  Its arithmetic, :func:`zgr_soft` (categorical) and :func:`zgr_bernoulli`
(Bernoulli), pure functions of the logits, the sample and the noise, is what ``estibench.grad``'s ``zgr`` calls
(as it calls ``reinmax_soft`` and ``gst_soft``).
"""
from __future__ import annotations

import torch

from estibench.models.protocols import LAYERED_BERNOULLI

from .base import Estimate, Estimator, batch_loss
from .binary import chain, log_mass, logit, uniform_like
from .onehot import NEEDS, ONEHOT_LATENTS, log_probs, onehot_sample, straight_through_elbo


def zgr_soft(ell: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """½ (p + (y − stopgrad p) log p_y), ``y.shape``: the surrogate whose Jacobian in ℓ is ZGR's."""
    p = ell.exp()
    log_p_y = (y * ell).sum(-1, keepdim=True)
    return 0.5 * (p + (y - p.detach()) * log_p_y)


def zgr_bernoulli(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """ZGR for Bernoulli latents (Shekhovtsov, 2023; the reference code's ``ZGR_binary``): z = 1[logit u < a]
    ~ Bern(σ(a)) from uniform u, with ∂z/∂a := ½ (z (1 − σ(a)) + (1 − z) σ(a)) (DARN(½))."""
    z = (logit(u) < a.detach()).to(a.dtype)
    p = torch.sigmoid(a.detach())
    slope = 0.5 * (z * (1.0 - p) + (1.0 - z) * p)
    return z + slope * (a - a.detach())


def zgr_binary_sample(l: int, a: torch.Tensor) -> torch.Tensor:
    """z ~ Bern(σ(a)) with ∂z/∂a := ½ (z (1 − σ(a)) + (1 − z) σ(a)) (DARN(½)): :func:`zgr_bernoulli` at fresh u."""
    return zgr_bernoulli(a, uniform_like(a))


class ZgrOptions(Estimator):  # shared declarations of both implementations
    display_name = "ZGR"
    guide_target = "elbo"
    generative_target = "elbo"
    unbiased = False


class ZgrCategorical(ZgrOptions):
    latent_types = ONEHOT_LATENTS
    needs = NEEDS

    def surrogate(self, model, x, num_particles):
        ell = log_probs(model, x)
        y = onehot_sample(ell, num_particles)
        f = straight_through_elbo(model, x, ell, y, zgr_soft(ell, y))
        return Estimate(batch_loss(f), f.detach().mean(-1))


class ZgrBernoulli(ZgrOptions):
    latent_types = frozenset({"bernoulli"})
    needs = frozenset({LAYERED_BERNOULLI})

    def surrogate(self, model, x, num_particles):
        logits, layers = chain(model, x, num_particles, zgr_binary_sample)
        log_q = sum(log_mass(a, z) for a, z in zip(logits, layers))
        f = (model.log_joint(x, model.join(layers)) - log_q).mean(0)
        return Estimate(batch_loss(f), f.detach().mean(-1))
