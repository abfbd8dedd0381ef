"""Straight-through Gumbel-softmax for Bernoulli latents (Jang, Gu & Poole, 2017).

The paper: Jang et al., "Categorical reparameterization with Gumbel-softmax", ICLR 2017, §2 (Eq. 1–2)
and the "straight-through Gumbel-softmax" of §2.2; the paper anneals τ = max(0.5, exp(−rt)).

The reference code: not checked against released code.

This file: the binary form: with logistic noise ε = logit u (the difference of two Gumbels), the
binary Concrete sample z̃ = σ((a + ε)/τ) and the hard sample z = 1[a + ε > 0] ~ Bern(σ(a)); forward
uses z, backward the binary-Concrete gradient: z_st = z + z̃ − stopgrad(z̃), so
∂z/∂a := σ'((a + ε)/τ)/τ.  The surrogate is the discrete IWAE bound
L̂ = log (1/K) Σ_k p_θ(x, z_k)/q_φ(z_k|x) evaluated at z_st (log q = Σ z_st·a − softplus(a)),
differentiated pathwise: θ's gradient is exactly the wake-θ / IWAE one (values are hard), φ's is
biased (its bias against the discrete gradient is measured in the tests, and falls as τ does).
Several layers: ancestral chain, layer l's z_st feeds guide_layer(l + 1, ·).  τ is annealed
linearly from ``initial_temperature`` to ``final_temperature`` over training (deviation from the
paper's exponential schedule; defaults 1 → 0.5 as its schedule's range).  K ≥ 1.  Biased.
"""
from estibench.models.protocols import LAYERED_BERNOULLI

from .base import Estimate, Estimator, batch_loss
from .binary import check_temperatures, relaxed_bound, uniform_like
from .functional import gumbel_straight_through_bernoulli


class GumbelStraightThrough(Estimator):
    display_name = "Gumbel-ST"
    latent_types = frozenset({"bernoulli"})
    needs = frozenset({LAYERED_BERNOULLI})
    unbiased = False

    def __init__(self, initial_temperature: float = 1.0, final_temperature: float = 0.5):
        super().__init__()
        check_temperatures("gumbel_st", initial_temperature, final_temperature)
        self.initial_temperature = float(initial_temperature)
        self.final_temperature = float(final_temperature)
        self.temperature = self.initial_temperature

    def set_progress(self, fraction: float) -> None:
        self.temperature = self.initial_temperature + (self.final_temperature - self.initial_temperature) * fraction

    def surrogate(self, model, x, num_particles):
        tau = self.temperature

        def draw(l, a):
            return gumbel_straight_through_bernoulli(a, uniform_like(a), tau)

        bound = relaxed_bound(model, x, num_particles, draw, model.log_joint)
        return Estimate(batch_loss(bound), bound.detach().mean(-1))
