"""Concrete / Gumbel-softmax relaxation of the IWAE bound (Maddison et al., 2017; Jang et al., 2017).

Revisiting Reweighted Wake-Sleep (Le et al.), §2.2 and §4.3: every categorical z_k is replaced
by a relaxed one-hot z̃_k ~ RelaxedOneHotCategorical(τ, logits of q_φ(·|x)) drawn by
reparameterisation, and the relaxed bound
    L̃_τ = log (1/K) Σ_k p_θ(x, z̃_k) / q̃_φ(z̃_k | x)
is differentiated pathwise for θ and φ.  τ is annealed linearly from ``initial_temperature`` to
``final_temperature`` over training (paper: 3 → 0.5; reference code: 3 → 1).

``density`` chooses how the relaxed log-masses are evaluated (the paper leaves it open):
  * "categorical" (default): log q̃(z̃) = Σ_c z̃_c log q_c and log p_θ(z̃) = Σ_c z̃_c log p_c.
    As τ → 0 the relaxed bound tends to the discrete ELBO_IS^K, so the estimator's bias against
    the discrete gradient shrinks with τ (tested) while its variance grows.
  * "concrete": the RelaxedOneHotCategorical densities of q and of the prior at τ (Maddison et
    al.'s relaxed objective).  Their log-ratio does not depend on τ, so this bias does not vanish.
The model must provide ``relaxed_log_joint``.  Biased for the discrete objective.
"""
import torch
from torch.distributions import RelaxedOneHotCategorical

from .base import Estimate, Estimator, IncompatibleError, batch_loss, logmeanexp


class Concrete(Estimator):
    latent_types = frozenset({"categorical"})
    requires = ("relaxed_log_joint",)
    unbiased = False

    def __init__(self, initial_temperature: float = 3.0, final_temperature: float = 0.5,
                 density: str = "categorical"):
        super().__init__()
        if initial_temperature <= 0 or final_temperature <= 0:
            raise IncompatibleError("concrete needs positive temperatures, got "
                                    f"{initial_temperature} → {final_temperature}")
        if density not in ("categorical", "concrete"):
            raise IncompatibleError(f"concrete density must be 'categorical' or 'concrete', got {density!r}")
        self.initial_temperature = float(initial_temperature)
        self.final_temperature = float(final_temperature)
        self.density = density
        self.temperature = self.initial_temperature

    def set_progress(self, fraction: float) -> None:
        self.temperature = self.initial_temperature + (self.final_temperature - self.initial_temperature) * fraction

    def surrogate(self, model, x, num_particles):
        logits = model.guide(x).logits
        tau = torch.tensor(self.temperature, dtype=logits.dtype, device=logits.device)
        relaxed = RelaxedOneHotCategorical(tau, logits=logits, validate_args=False)
        z = relaxed.rsample((num_particles,))
        if self.density == "categorical":
            log_q = (z * logits).sum(-1)
            log_p = model.relaxed_log_joint(x, z, None)
        else:
            log_q = relaxed.log_prob(z)
            log_p = model.relaxed_log_joint(x, z, tau)
        bound = logmeanexp(log_p - log_q, 0)
        return Estimate(batch_loss(bound), bound.detach().mean(-1))
