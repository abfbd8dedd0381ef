"""Reweighted wake for θ, reweighted wake and sleep for φ: the RWS authors' ``rw+rws`` (Le et al.,
"Revisiting Reweighted Wake-Sleep", §4.2: "using both wake- and sleep-φ updates" helped on the continuous
VAE; the reference code's variant names ``<θ update>+<φ update>``: ``rw`` = reweighted wake, ``rws`` =
reweighted wake plus sleep).

The paper / reference code: θ gets the wake-θ gradient ∇_θ log (1/K) Σ_k w_k (z_k ~ q_φ); φ gets the sum of
the wake-φ gradient of Eq. 5, Σ_k w̃_k ∇_φ log q_φ(z_k | x), and the sleep-φ gradient of Eq. 3,
(1/N) Σ_n ∇_φ log q_φ(z_n | x_n) with (z_n, x_n) ~ p_θ(z, x); gradients are not passed through z.

This file: exactly the sum, with N = B·K sleep samples per replicate (as ``ws``).  Its φ-update is the sum
of two estimates of different objectives (the data's and the model's inclusive KL); ``guide_target`` says
"inclusive_kl" (the wake part's), and it is biased for it (``unbiased = False``).
"""
from .base import SAMPLED_LATENTS, Estimate, Estimator, batch_loss, sample_guide, sleep_phi
from .functional.weights import wake_phi, wake_theta


class ReweightedWakeWakeSleep(Estimator):
    display_name = "RW+RWS"
    latent_types = SAMPLED_LATENTS
    guide_target = "inclusive_kl"
    unbiased = False
    cost_hint = 2.5

    def surrogate(self, model, x, num_particles):
        _, log_q, log_p = sample_guide(model, x, num_particles)
        bound = wake_theta(log_p, log_q)
        loss = (batch_loss(bound) + batch_loss(wake_phi(log_p, log_q))
                + batch_loss(sleep_phi(model, x.shape[1] * num_particles)))
        return Estimate(loss, bound.detach().mean(-1))
