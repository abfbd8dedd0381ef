"""Wake-sleep (WS): wake-θ + sleep-φ.

The paper (Revisiting Reweighted Wake-Sleep, Le et al., §3.1): θ follows the wake-phase θ update (the
IWAE θ-gradient ∇_θ log (1/K) Σ_k w_k, z_k ~ q_φ); φ follows the sleep-phase update of Eq. 3,
    ĝ_φ = (1/N) Σ_n ∇_φ log q_φ(z_n | x_n),   (z_n, x_n) ~ p_θ(z, x),
the sleep update using K samples from p_θ(z, x) (in the GMM study: batch × K samples).  The sleep
gradient is unbiased for Eq. 3 (KL averaged over the *model's* p_θ(x)); against the wake objective on
the data (Eq. 4) it is biased, which is what the paper's Fig 4 shows.

The reference code (the RWS authors' GMM code): separate Adams for θ and φ; it steps θ first, then
draws the sleep samples from the updated θ.

This file: N = B·K samples per replicate (batch × K); ``guide_target = "inclusive_kl"`` (the wake
objective of Eq. 4, against which the sleep gradient is biased).  Deviation from the reference code:
θ and φ are updated simultaneously from one step; with lr 1e-3 the two differ by one Adam step.
"""
from .base import SAMPLED_LATENTS, Estimate, Estimator, batch_loss, sample_guide, sleep_phi
from .functional.weights import wake_theta


class WakeSleep(Estimator):
    latent_types = SAMPLED_LATENTS
    display_name = "WS"
    cost_hint = 2.5
    guide_target = "inclusive_kl"
    unbiased = False

    def surrogate(self, model, x, num_particles):
        _, log_q, log_p = sample_guide(model, x, num_particles)
        bound = wake_theta(log_p, log_q)
        loss = batch_loss(bound) + batch_loss(sleep_phi(model, x.shape[1] * num_particles))
        return Estimate(loss, bound.detach().mean(-1))
