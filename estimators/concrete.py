"""Concrete / Gumbel-softmax relaxation of the IWAE bound (Maddison et al., 2017; Jang et al., 2017).

Revisiting Reweighted Wake-Sleep (Le et al.), §2.2 and §4.3: every categorical z_k is replaced
by a relaxed one-hot z̃_k ~ RelaxedOneHotCategorical(τ, logits of q_φ(·|x)) drawn by
reparameterisation, and the relaxed bound
    L̃_τ = log (1/K) Σ_k p_θ(x, z̃_k) / q̃_φ(z̃_k | x)
is differentiated pathwise for θ and φ.  τ is annealed linearly from ``initial_temperature`` to
``final_temperature`` over training (paper: 3 → 0.5; reference code: 3 → 1).

The relaxed log-masses are evaluated as log q̃(z̃) = Σ_c z̃_c log q_c and log p_θ(z̃) = Σ_c z̃_c log p_c
(the model's ``relaxed_log_joint``): as τ → 0 the relaxed bound tends
to the discrete ELBO_IS^K, so the bias against the discrete gradient shrinks with τ (tested) while
the variance grows.  Deviation, stated: the paper does not say which relaxed densities it used;
Maddison et al.'s alternative, the Concrete densities of q and of the prior at τ, gives a
log-ratio that does not depend on τ at all, so its bias would not vanish (and it underflows in
float32 below τ ≈ 0.1), which is why it is not offered.
The model must provide ``relaxed_log_joint``.  Biased for the discrete objective.

Bernoulli latents (binary Concrete, Maddison et al. 2017 / Jang et al. 2017; models with the
layered interface ``guide_layer``): z̃_l ~ RelaxedBernoulli(τ, logits a_l), i.e.
z̃ = σ((a + logit u)/τ), drawn by reparameterisation layer by layer (the relaxed z̃_l feeds
guide_layer(l + 1, ·)); the same choice of relaxed masses as above, log q̃(z̃) = Σ_l z̃_l·a_l −
softplus(a_l) (= z̃ log σ(a) + (1 − z̃) log σ(−a)) and log p_θ(x, z̃) = ``relaxed_log_joint``; the
relaxed bound is differentiated pathwise for θ and φ.  The categorical path is unchanged.
"""
import torch
from torch.distributions import RelaxedBernoulli, RelaxedOneHotCategorical

from .base import Estimate, Estimator, IncompatibleError, batch_loss, logmeanexp
from .binary import relaxed_bound


class Concrete(Estimator):
    latent_types = frozenset({"categorical", "bernoulli"})
    requires = ("relaxed_log_joint",)
    unbiased = False

    def __init__(self, initial_temperature: float = 3.0, final_temperature: float = 0.5):
        super().__init__()
        if initial_temperature <= 0 or final_temperature <= 0:
            raise IncompatibleError("concrete needs positive temperatures, got "
                                    f"{initial_temperature} → {final_temperature}")
        self.initial_temperature = float(initial_temperature)
        self.final_temperature = float(final_temperature)
        self.temperature = self.initial_temperature

    def set_progress(self, fraction: float) -> None:
        self.temperature = self.initial_temperature + (self.final_temperature - self.initial_temperature) * fraction

    def check(self, model, num_particles: int) -> None:
        if model.latent.kind == "bernoulli" and not hasattr(model, "guide_layer"):
            raise IncompatibleError(f"estimator {self.name!r} does not support bernoulli latents without the "
                                    f"layered interface: {type(model).__name__} has no guide_layer()")
        super().check(model, num_particles)

    def surrogate(self, model, x, num_particles):
        if model.latent.kind == "bernoulli":
            return self.bernoulli_surrogate(model, x, num_particles)
        logits = model.guide(x).logits
        tau = torch.tensor(self.temperature, dtype=logits.dtype, device=logits.device)
        relaxed = RelaxedOneHotCategorical(tau, logits=logits, validate_args=False)
        z = relaxed.rsample((num_particles,))
        log_q = (z * logits).sum(-1)
        log_p = model.relaxed_log_joint(x, z)
        bound = logmeanexp(log_p - log_q, 0)
        return Estimate(batch_loss(bound), bound.detach().mean(-1))

    def bernoulli_surrogate(self, model, x, num_particles):
        def draw(l, a):
            tau = torch.tensor(self.temperature, dtype=a.dtype, device=a.device)
            return RelaxedBernoulli(tau, logits=a, validate_args=False).rsample()

        bound = relaxed_bound(model, x, num_particles, draw, model.relaxed_log_joint)
        return Estimate(batch_loss(bound), bound.detach().mean(-1))
