"""DVAE++'s bound for VAEs with an RBM prior (Vahdat et al., 2018, "DVAE++", §5: Eq. 6 and the KL display
after it; §7.2, Table 2, columns "RBM (ours)" and "RBM (Rolfe)"), for every smoothing of
``estimators/smoothing.py``: ``overlap_exp``, ``overlap_logistic``, ``overlap_power`` and ``spike_exp`` on a
model with a Boltzmann prior are these classes (one registered name per smoothing, one implementation for
layered directed priors and one for RBM priors).

The paper (§5): p(z₁, z₂) = e^{−E(z₁, z₂)} / Z with E = −a₁ᵀz₁ − a₂ᵀz₂ − z₁ᵀWz₂; every z paired with
ζ ~ r(ζ|z), the decoder reads ζ (Fig. 2(g)); the guide is Fig. 2(d), q(z₁|x) r(ζ₁|z₁) q(z₂|x, ζ₁) r(ζ₂|z₂).
With μ₁ = q(z₁ = 1 | x), ν₁ = q(z₁ = 1 | x, ζ₁) = σ(logit μ₁ + log r(ζ₁|1) − log r(ζ₁|0)) and
μ₂ = q(z₂ = 1 | x, ζ₁),
    KL = log Z − H(q(z₁|x)) − E_ζ₁[H(q(z₂|x, ζ₁))] − a₁ᵀμ₁ − E_ζ₁[a₂ᵀμ₂] − E_ζ₁[ν₁ᵀWμ₂],
the ELBO is E[log p(x|ζ)] − KL, and every term but log Z is differentiated automatically through the
reparameterised ζ (inverse CDF).  With one latent layer (q factorial over all bits, §7.2) the KL "reduces
to the mean-field approximation" log Z − H(q) − a₁ᵀμ₁ − a₂ᵀμ₂ − μ₁ᵀWμ₂.  App. E puts log Z into the
objective for automatic differentiation; here −∇ log Z is the negative phase of
:func:`estimators.base.log_partition_term` (exact prior samples on ``rbm_vae_tiny``, the model's persistent
chains otherwise: DVAE#'s surrogate −mean E(stop-grad z⁻)), and the value logged subtracts the model's
log Z (exact, or its last AIS estimate).

This file.  The energy terms come from the model's log p*(z) = −E(z), which is affine in every bit
(MULTILINEAR_ENERGY), so at independent means it is the cross-entropy: K = 1 is the paper's ELBO exactly,
    L = log p(x|ζ) + Σ_g H(q(z_g|·)) + log p*(m) − log Z,
with log p*(m) = log p*([μ₁, μ₂]) for one group and log p*([ν₁, μ₂]) + a₁ᵀ(μ₁ − ν₁) for two (the a₁ᵀμ₁ of
the display; a₁ᵀ(μ₁ − ν₁) is written log p*([μ₁, 0]) − log p*([ν₁, 0])).  K > 1 (not in the paper; the
IWAE form of ``overlap_exp.py``): log (1/K) Σ_k w_k − log Z with
    log w_k = log p(x|ζ_k) + log p*(ν_k) − Σ_g c(ν_gk; logits_gk),   c(m; h) = Σ_i m_i h_i − softplus(h_i),
z integrated out of each weight given its particle's ζ (q(z|ζ, x) is factorial, so
E_{z|ζ}[log p*(z) − log q(z|·)] is that expression), a lower bound on log p(x) that tends to the IWAE
bound as β → ∞.  Only the joint bound: the marginal one (Eq. 5) needs the mixture p(ζ) = Σ_z p(z) r(ζ|z),
intractable for an RBM, and ``elbo="marginal"`` is refused with one line.

Spike-and-exponential (``spike_exp``, Table 2's "RBM (Rolfe)" column): ν is the hard z = 1[ζ > 0].
Where a hard bit multiplies a coefficient that depends on later draws (ν₁ᵀWμ₂ with two groups; every
weight for K > 1) the bound jumps at the spike's edge, and the exact boundary term of ``spike_exp.py``
is added, each bit's coefficient read off the multilinear energy.  Deviation, stated: Rolfe (2016) trains
with hand-coded gradients of his own bound; this is DVAE++'s bound with Rolfe's smoothing, which is
DVAE++ §7.2's comparison (one group: "the only difference ... lies in the ... smoothing").

β is annealed linearly from ``beta_start`` to ``beta_end`` (DVAE++ §7.1; the defaults of each smoothing's
file).  Biased for the discrete objective (the bias falls as β grows, tested on ``rbm_vae_tiny`` against
the exact gradient including log Z).  Evaluation is in the binary limit (the model's discrete joint).
Refused for the RBM-prior paper's prior −F(z) (``rbm_hidden`` > 0), which is not multilinear.
"""
from __future__ import annotations

from typing import Callable, List

import torch

from estibench.models.protocols import (MULTILINEAR_ENERGY, RELAXED_BOLTZMANN, UNNORMALISED_PRIOR,
                                        bernoulli_log_mass)

from .base import Estimate, IncompatibleError, batch_loss, log_partition_term, logmeanexp
from .overlap_exp import OverlapExp, SmoothedBound
from .overlap_logistic import OverlapLogistic
from .overlap_power import OverlapPower
from .spike_exp import SpikeExp


def relaxed_guide(model, x: torch.Tensor, num_particles: int, draw: Callable, value: Callable):
    """The guide's groups with relaxed draws (RELAXED_BOLTZMANN): a list of (logits, draw) per group, the
    second group's logits reading the first group's relaxed value ζ₁; logits ``[K, R, B, n_g]``."""
    g = model.encoder_logits(0, x)
    g = g.expand(num_particles, *g.shape)
    groups = [(g, draw(g))]
    if model.hierarchical_guide:
        xk = x.expand(num_particles, *x.shape)
        g2 = model.encoder_logits(1, xk, value(groups[0][1]))
        groups.append((g2, draw(g2)))
    return groups


def coefficients(f: Callable, bits: List[torch.Tensor]) -> List[torch.Tensor]:
    """∂f/∂bit at ``bits`` (detached) for an f affine in every bit: the exact change of f when that bit
    goes 0 → 1 with the others held."""
    with torch.enable_grad():
        leaves = [b.detach().requires_grad_(True) for b in bits]
        grads = torch.autograd.grad(f(*leaves).sum(), leaves)
    return [g.detach() for g in grads]


class SmoothedRBM(SmoothedBound):
    """DVAE++'s §5 bound on an RBM prior for the smoothing of the class it is combined with."""

    needs = frozenset({UNNORMALISED_PRIOR, RELAXED_BOLTZMANN, MULTILINEAR_ENERGY})
    handles = frozenset({UNNORMALISED_PRIOR})

    def check(self, model, num_particles: int) -> None:
        super().check(model, num_particles)
        if self.elbo == "marginal" and not self.atom:
            raise IncompatibleError(f"estimator {self.name!r}: elbo='marginal' (DVAE++ Eq. 5) needs p(ζ) = Σ_z p(z) "
                                    f"r(ζ|z), intractable for the RBM prior of {type(model).__name__}; use elbo='joint'")

    def surrogate(self, model, x, num_particles):
        K = num_particles
        groups = relaxed_guide(model, x, K, self.draw, self.value)
        logits = [g for g, _ in groups]
        nu = [self.posterior(g, d) for g, d in groups]
        log_p = model.log_prior_unnormalised
        log_w = model.log_likelihood(x, torch.cat([self.value(d) for _, d in groups], -1))
        jumps = []
        if K == 1:
            mu = [torch.sigmoid(g) for g in logits]
            log_w = log_w - sum(bernoulli_log_mass(g, m) for g, m in zip(logits, mu))  # + Σ_g H(q(z_g|·))
            if len(groups) == 1:
                log_w = log_w + log_p(mu[0])
            else:
                def coupling(first, second):  # log p*([ν₁, μ₂]) − log p*([ν₁, 0]): a₂ᵀμ₂ + ν₁ᵀWμ₂
                    return log_p(torch.cat([first, second], -1)) - log_p(torch.cat([first, torch.zeros_like(second)], -1))
                log_w = log_w + coupling(nu[0], mu[1]) + log_p(torch.cat([mu[0], torch.zeros_like(mu[1])], -1))
                if self.atom:  # ν₁ is the hard z₁, multiplying Wμ₂(ζ₁)
                    jumps.append((nu[0], logits[0], coefficients(lambda b: coupling(b, mu[1].detach()), nu[:1])[0]))
        else:
            def log_weight(bits, group_logits):  # log p*(ν) − Σ_g c(ν_g; logits_g)
                return log_p(torch.cat(bits, -1)) - sum(bernoulli_log_mass(g, b) for g, b in zip(group_logits, bits))
            log_w = log_w + log_weight(nu, logits)
            if self.atom:  # every hard bit's coefficient in its particle's log-weight
                detached = [g.detach() for g in logits]
                jumps = list(zip(nu, logits, coefficients(lambda *bits: log_weight(bits, detached), nu)))
        bound = logmeanexp(log_w, 0)
        if jumps:
            bound = bound + self.jump_terms(log_w, jumps)
        log_z = log_partition_term(model)
        return Estimate(batch_loss(bound - log_z.unsqueeze(-1)), bound.detach().mean(-1) - log_z.detach())


class OverlapExpRBM(SmoothedRBM, OverlapExp):
    pass


class OverlapLogisticRBM(SmoothedRBM, OverlapLogistic):
    pass


class OverlapPowerRBM(SmoothedRBM, OverlapPower):
    # draws are (ζ, log ζ, log(1 − ζ)) triples; the layered form's default elbo="marginal" is intractable
    # for an RBM prior, so the joint bound is the default here
    default_elbo = "joint"


class SpikeExpRBM(SmoothedRBM, SpikeExp):
    pass
