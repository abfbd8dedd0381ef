"""Contrastive RWS: reweighted wake-sleep for RBM priors ("Learning Deep Generative Models with Discrete
Latent Variables", the RBM-prior hybrid model, ``000_…`` §3.2, Eq. 5, App. A Algorithm 1).

The paper: with unnormalised weights w_i = p*(x, z_i) / q(z_i|x), p* = e^{−F(z)} p(x|z), z_i ~ q(·|x),
and normalised weights w̃_i,
* θ (decoder):   Σ_i w̃_i ∇_θ log p(x, z_i)                                       (wake-θ);
* RBM ϕ:         −Σ_i w̃_i ∇_ϕ F(z_i) + (1/M) Σ_j ∇_ϕ F(z⁻_j), z⁻ from M CD/PCD chains   (Eq. 5);
* φ (encoder):   Σ_i w̃_i ∇_φ log q(z_i|x) + (1/M) Σ_j ∇_φ log q(z⁻_j | x⁻_j), x⁻_j ~ p(x | z⁻_j)
                 (wake-φ and a sleep phase that starts from the RBM's chains).
Its 50 samples per data point in the MNIST experiment are K = 50 here.

This file: exactly those three gradients.  The wake terms are the WW estimator's (θ's wake gradient
equals ∇_θ of the IWAE bound, so with the negative phase θ's estimate is unbiased for the normalised
bound when the negatives are exact prior samples); the negative phase is
:func:`estimators.base.log_partition_term` on the model's ``negative_samples()``, and the same negatives
drive the sleep phase (``sample_observations``).  Our prior's energy is over both latent halves, so
F here is the energy E(z₁, z₂) of :mod:`estibench.models.rbm_vae` (the paper sums its RBM's hidden
units out; with both sides latent, the Eq. 5 gradient is the same with E in place of F).  φ's
estimate is biased (self-normalised weights, and the sleep phase targets KL(p ‖ q) under the
model's own data), so ``unbiased = False``.  It needs an unnormalised prior (for a directed prior it
would be WW plus a WS sleep phase).
"""

from estibench.models.protocols import UNNORMALISED_PRIOR

from .base import Estimate, Estimator, batch_loss, log_partition_term, sample_guide
from .functional.weights import wake_phi, wake_theta


class ContrastiveRWS(Estimator):
    display_name = "Contrastive RWS"
    guide_target = "inclusive_kl"
    unbiased = False
    needs = frozenset({UNNORMALISED_PRIOR})
    handles = frozenset({UNNORMALISED_PRIOR})
    latent_types = frozenset({"bernoulli"})
    cost_hint = 2.0

    def surrogate(self, model, x, num_particles):
        _, log_q, log_p = sample_guide(model, x, num_particles)
        bound = wake_theta(log_p, log_q)
        negatives = model.negative_samples()  # [M, R, D], from the RBM's chains (exact when enumerable)
        log_z = log_partition_term(model, negatives)
        x_sleep = model.sample_observations(negatives)  # [R, M, *obs]
        sleep = model.guide(x_sleep).log_prob(negatives.transpose(0, 1).to(log_q.dtype))
        loss = batch_loss(bound - log_z.unsqueeze(-1)) + batch_loss(wake_phi(log_p, log_q)) + batch_loss(sleep)
        return Estimate(loss, bound.detach().mean(-1) - log_z.detach())
