"""Straight-through estimator for Bernoulli latents (Bengio, Léonard & Courville, 2013).

The paper: Bengio et al., "Estimating or propagating gradients through stochastic neurons for
conditional computation" (2013), §4 (the straight-through estimator).

The reference code: not checked against released code.

This file: variant implemented, exactly: the forward pass uses the hard sample z = 1[u < σ(a)] ~
Bern(σ(a)); the backward pass treats the threshold as the identity in the mean, i.e.
z_st = z + σ(a) − stopgrad(σ(a)), so ∂z/∂a := σ'(a) ("sigmoid-adjusted" ST, the derivative of the
mean σ(a), not the identity ∂z/∂a := 1).  The surrogate is the IWAE bound
L̂ = log (1/K) Σ_k p_θ(x, z_k) / q_φ(z_k|x) with log q evaluated as Σ_d z_st·a − softplus(a) and
log p_θ(x, z_st) by the model (values are the hard z, so L̂ is the discrete bound), differentiated
pathwise for φ and θ.  θ's gradient is therefore exactly the wake-θ / IWAE θ-gradient (z hard); φ's
is biased (measured in the tests).  Several layers: the chain runs ancestrally, layer l's z_st
feeding guide_layer(l + 1, ·), so the surrogate gradient also flows through the upstream samples.
K ≥ 1.  Biased.
"""
from estibench.models.protocols import LAYERED_BERNOULLI

from .base import Estimate, Estimator, batch_loss
from .binary import relaxed_bound, uniform_like
from .functional import straight_through_bernoulli


def straight_through_sample(l, a):
    return straight_through_bernoulli(a, uniform_like(a))


class StraightThrough(Estimator):
    display_name = "ST"
    latent_types = frozenset({"bernoulli"})
    needs = frozenset({LAYERED_BERNOULLI})
    unbiased = False

    def surrogate(self, model, x, num_particles):
        bound = relaxed_bound(model, x, num_particles, straight_through_sample, model.log_joint)
        return Estimate(batch_loss(bound), bound.detach().mean(-1))
