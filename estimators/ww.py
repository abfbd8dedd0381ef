"""Reweighted wake-wake (WW): wake-θ + wake-φ.

The paper (Revisiting Reweighted Wake-Sleep, Le et al., Eq. 5):
    ĝ_φ = Σ_k (w_k / Σ_ℓ w_ℓ) ∇_φ log q_φ(z_k|x),   z_k ~ q_φ(·|x),
a self-normalised estimate of ∇_φ of −KL(p_θ(z|x) ‖ q_φ(z|x)) (Eq. 4), biased with a bias that
falls as K grows; θ gets the wake-θ (IWAE) gradient.

The reference code (the RWS authors' GMM code): separate Adams for θ and φ, the θ step first.

This file: θ's wake-θ gradient comes from the same particles as φ's.  No deviation from the paper
(θ and φ step together; separate Adams are equivalent because Adam is elementwise; the reference
code's θ-first order is not reproduced).
"""
from .base import SAMPLED_LATENTS, Estimate, Estimator, batch_loss, sample_guide
from .functional.weights import wake_phi, wake_theta


class WakeWake(Estimator):
    latent_types = SAMPLED_LATENTS
    display_name = "WW"
    guide_target = "inclusive_kl"
    unbiased = False

    def surrogate(self, model, x, num_particles):
        _, log_q, log_p = sample_guide(model, x, num_particles)
        bound = wake_theta(log_p, log_q)
        return Estimate(batch_loss(bound) + batch_loss(wake_phi(log_p, log_q)), bound.detach().mean(-1))
