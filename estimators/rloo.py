"""RLOO: REINFORCE with the leave-one-out baseline over K samples (Kool, van Hoof & Welling, 2019).

The paper: Kool et al., "Buy 4 REINFORCE samples, get a baseline for free!", ICLR 2019 workshop
(DeepRLStructPred): with K i.i.d. samples z_k ~ q_φ, each sample's baseline is the mean of the other
K − 1 samples' values,
    ĝ = (1/K) Σ_k (f(z_k) − (1/(K−1)) Σ_{j≠k} f(z_j)) ∇_φ log q_φ(z_k)
      = (1/(K−1)) Σ_k (f(z_k) − f̄) ∇_φ log q_φ(z_k),     f̄ = (1/K) Σ_j f(z_j)
(Eq. number not verified: the paper's text was not available here).  Each baseline is independent of
the sample it multiplies, so the estimator is unbiased for ∇ E_q[f] for every K ≥ 2.  It is the baseline
of the estimators that followed (double control variates, RODEO, ARMS, DisARM's and IndeCateR's
experiments), where f is the ELBO's integrand.

The reference code: not checked against released code (the later papers' repositories have it as a
baseline estimator; this file was written from the formula above).

This file: f(z) = log p_θ(x, z) − log q_φ(z|x), the ELBO's integrand, so the target is the ELBO
whatever K (``guide_target = generative_target = "elbo"``): φ gets the estimator above plus the direct
term (1/K) Σ_k ∇_φ[log p − log q](z_k) at fixed z (= −(1/K) Σ_k ∇_φ log q(z_k), zero mean), θ gets
(1/K) Σ_k ∇_θ log p_θ(x, z_k).  Any latent the guide can sample and score.  K ≥ 2.  Unbiased.
"""
from .base import SAMPLED_LATENTS, Estimate, Estimator, batch_loss, sample_guide
from .functional import leave_one_out, rloo

__all__ = ["Rloo", "leave_one_out"]


class Rloo(Estimator):
    latent_types = SAMPLED_LATENTS
    min_particles = 2
    display_name = "RLOO"
    guide_target = "elbo"
    generative_target = "elbo"

    def surrogate(self, model, x, num_particles):
        _, log_q, log_p = sample_guide(model, x, num_particles)
        f = log_p - log_q
        per_point = rloo(f, log_q)
        return Estimate(batch_loss(per_point), f.detach().mean(0).mean(-1))
