"""Defensive reweighted wake-wake (δ-WW).

The paper (Revisiting Reweighted Wake-Sleep, Le et al., §4.3): Eq. 5 with the proposal replaced by the
defensive mixture q_{φ,δ}(z|x) = (1 − δ) q_φ(z|x) + δ Uniform(z) (Hesterberg, 1995):
    ĝ_φ = Σ_k (w̃_k / Σ_ℓ w̃_ℓ) ∇_φ log q_φ(z_k|x),  z_k ~ q_{φ,δ},  w̃_k = p_θ(z_k, x) / q_{φ,δ}(z_k|x),
the mixture's density evaluated at the mixture sample z_k.  δ = 0.2 (paper).  Biased, like WW, with a
bias that falls as K grows.

The reference code (the RWS authors' GMM code): separate Adams for θ and φ, the θ step first; it
evaluates the mixture proposal's density q_{φ,δ} at the q-sample rather than at the mixture sample.

This file: the paper's w̃_k, q_{φ,δ} evaluated at the mixture sample (not the reference code's
q-sample); option ``delta``, default 0.2 (paper).  Uniform is the latent space's uniform distribution
(uniform over C categories; Bernoulli(½) per bit); real-valued latents have none, and their defensive
component is the broad N(0, 3² I) of ``models.latents.NormalLatent`` (our choice, stated); structured latents bring their
model's own (AIR: a uniform step count with N(0, 3² I) where and what, ``models/air.py``).  θ gets the ordinary wake-θ gradient from K
particles of q_φ (the mixture draws reuse those particles, replacing each by a uniform draw with
probability δ).  Biased, like WW, with a bias that falls as K grows.
"""
import torch

from .base import SAMPLED_LATENTS, Estimate, Estimator, IncompatibleError, batch_loss
from .functional.weights import defensive_log_proposal, self_normalised, wake_theta


class DefensiveWakeWake(Estimator):
    latent_types = SAMPLED_LATENTS
    display_name = "δ-WW"
    guide_target = "inclusive_kl"
    unbiased = False

    def __init__(self, delta: float = 0.2):
        super().__init__()
        if not 0.0 < delta < 1.0:
            raise IncompatibleError(f"dww needs 0 < delta < 1, got {delta}")
        self.delta = float(delta)

    def surrogate(self, model, x, num_particles):
        K = num_particles
        q = model.guide(x)
        uniform = model.latent.uniform(q.batch_shape, device=x.device)
        z_q = q.sample((K,))
        z_u = uniform.sample((K,))
        pick = torch.rand(z_q.shape[: 1 + len(q.batch_shape)], device=x.device) < self.delta
        z_mix = torch.where(pick.view(*pick.shape, *([1] * (z_q.dim() - pick.dim()))), z_u, z_q)
        z = torch.cat([z_q, z_mix])
        log_q = q.log_prob(z)
        log_p = model.log_joint(x, z)
        bound = wake_theta(log_p[:K], log_q[:K])
        log_proposal = defensive_log_proposal(log_q[K:], uniform.log_prob(z_mix), self.delta)
        wake_phi = self_normalised(log_p[K:] - log_proposal, log_q[K:])
        return Estimate(batch_loss(bound) + batch_loss(wake_phi), bound.detach().mean(-1))
