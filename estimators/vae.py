"""The reparameterised ELBO of the variational autoencoder (Kingma & Welling, 2014, "Auto-encoding
variational Bayes", §2.3, Eq. 7: the SGVB estimator L̃^B; Rezende et al., 2014).

The paper: with z = g_φ(ε, x), ε ~ p(ε) (for a Gaussian guide z = μ_φ(x) + σ_φ(x) ⊙ ε, ε ~ N(0, I)),
    L̃(θ, φ; x) = (1/L) Σ_l [log p_θ(x, z_l) − log q_φ(z_l | x)],
differentiated through z for θ and φ alike.  Its expectation is the ELBO for every L.

This file: L = K particles (the cell's K), z from the model's ``guide_rsample`` (REPARAMETERISED).  The
target is the ELBO whatever K (``guide_target = generative_target = "elbo"``); unbiased for its gradient
(tested against the closed form on ``linear_gaussian``).  For the K-particle bound use ``iwae``.
"""
from estibench.models.protocols import REPARAMETERISED

from .base import Estimate, Estimator, batch_loss


class Vae(Estimator):
    display_name = "VAE"
    latent_types = frozenset({"normal"})
    needs = frozenset({REPARAMETERISED})
    guide_target = "elbo"
    generative_target = "elbo"

    def surrogate(self, model, x, num_particles):
        z, log_q = model.guide_rsample(x, num_particles)
        elbo = (model.log_joint(x, z) - log_q).mean(0)
        return Estimate(batch_loss(elbo), elbo.detach().mean(-1))
