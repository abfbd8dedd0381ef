"""The importance-weighted autoencoder's bound with reparameterised gradients (Burda, Grosse &
Salakhutdinov, 2016, "Importance weighted autoencoders", Eq. 8 and the gradient of §3, Eq. 14; RWS Eq. 1).

The paper: L_K = E[log (1/K) Σ_k w_k], w_k = p_θ(x, z_k) / q_φ(z_k | x), z_k = g_φ(ε_k, x); its gradient
    ∇ L_K = E[Σ_k w̃_k ∇ log w(x, g_φ(ε_k, x), θ, φ)],   w̃_k = w_k / Σ_j w_j,
is estimated by the same expression at one draw of ε_{1:K} (pathwise for θ and φ).

This file: exactly that, z from the model's ``guide_rsample`` (REPARAMETERISED); unbiased for ∇ ELBO_IS^K
(tested: at K = 1 against the closed-form ELBO gradient on ``linear_gaussian``; at K > 1 against the
score-function estimators of the same bound, REINFORCE and VIMCO, which agree in mean).
"""
from estibench.models.protocols import REPARAMETERISED

from .base import Estimate, Estimator, batch_loss
from .functional.weights import importance_bound


class Iwae(Estimator):
    display_name = "IWAE"
    latent_types = frozenset({"normal"})
    needs = frozenset({REPARAMETERISED})

    def surrogate(self, model, x, num_particles):
        z, log_q = model.guide_rsample(x, num_particles)
        bound = importance_bound(model.log_joint(x, z) - log_q)
        return Estimate(batch_loss(bound), bound.detach().mean(-1))
