"""REINFORCE for the IWAE bound (score function, no baseline).

The paper (Revisiting Reweighted Wake-Sleep, Le et al., Eq. 2):
    ĝ_φ = log((1/K) Σ_k w_k) ∇_φ log Q_φ(z_{1:K}|x) + ∇_φ log((1/K) Σ_k w_k),
    w_k = p_θ(z_k, x) / q_φ(z_k|x),  z_k ~ q_φ(·|x) i.i.d.;  θ gets ∇_θ log((1/K) Σ_k w_k).
Unbiased for ∇ ELBO_IS^K (Eq. 1).

The reference code (the RWS authors' GMM code): θ and φ are trained with one joint Adam; the estimator
itself is not otherwise checked against released code.

This file: the paper's estimator.  No deviation from the paper.
"""
from .base import SAMPLED_LATENTS, Estimate, Estimator, batch_loss, logmeanexp, sample_guide
from .functional import score_function


class Reinforce(Estimator):
    latent_types = SAMPLED_LATENTS
    display_name = "REINFORCE"
    def surrogate(self, model, x, num_particles):
        _, log_q, log_p = sample_guide(model, x, num_particles)
        bound = logmeanexp(log_p - log_q, 0)
        per_point = score_function(bound, log_q.sum(0))  # the K particles' joint score
        return Estimate(batch_loss(per_point), bound.detach().mean(-1))
