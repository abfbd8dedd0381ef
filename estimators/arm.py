"""ARM: the augment-REINFORCE-merge estimator for Bernoulli latents (Yin & Zhou, 2019).

The paper: Yin & Zhou, "ARM: Augment-REINFORCE-merge gradient for stochastic binary networks", ICLR
2019, the ARM estimator of its §2 (univariate theorem and multivariate form; equation numbers differ
between the arXiv and conference versions), as restated by Dong et al. (2020, DisARM) for the gradient
with respect to the logits a of z ~ Bern(σ(a)):
    ∇_a E[f(z)] = E_{u ~ U(0,1)^D} [(f(1[u > σ(−a)]) − f(1[u < σ(a)])) (u − ½)].
The ARM and DisARM papers' experiments include models with several stochastic layers.

The reference code: not checked against released code.

This file: b = 1[u < σ(a)] and b̃ = 1[u > σ(−a)] = 1[1 − u < σ(a)] (compared in logit space:
b = 1[ε < a], b̃ = 1[−ε < a], ε = logit u), f = L̂ = log (1/K) Σ_k w_k the IWAE bound (K = 1: the
ELBO), and the φ-gradient is Σ_l ĝ_lᵀ ∂a_l/∂φ plus the direct term ∇_φ L̂ at fixed z, taken in the
form Σ_k (1/K − w̃_k) ∇_φ log q(z_k) (its difference from ∇_φ L̂ has zero mean; it vanishes for
K = 1, where the direct term −∇_φ log q(z) has zero mean).  θ gets the wake-θ / IWAE gradient at b.
Unbiased.

* K > 1 (extension, stated): the K particles' bits of a layer are one factorial Bernoulli vector of
  K·D bits, so ARM applies to it as is: one u per particle and bit, f evaluated at the K base
  particles and at the K antithetic particles (each particle's own pair), 2 evaluations of L̂.
* Several stochastic layers (as in the ARM and DisARM papers' multi-layer experiments): for layer l
  the pair (b_l, b̃_l) shares the upstream sample z_{<l} and the layers below it are drawn on both
  branches with the same (common) uniforms u_{>l}; each branch is a valid draw from q given its
  z_l, and u_{>l} is independent of u_l, so each layer's term is unbiased.  The base branch of every
  layer is the one ancestral sample z = (b_0, b_1, …) built from u_0, u_1, …, so L layers cost
  L + 1 evaluations of L̂ (the base one with gradients, the L antithetic ones without).
"""
import torch

from estibench.models.protocols import LAYERED_BERNOULLI

from .base import Estimate, Estimator, batch_loss, logmeanexp, wake_theta
from .binary import chain, direct_term, log_mass, logit, uniform_like
from .functional import arm_logit_gradient


class Arm(Estimator):
    display_name = "ARM"
    latent_types = frozenset({"bernoulli"})
    needs = frozenset({LAYERED_BERNOULLI})

    def pair_weight(self, u, a, b, b_anti, f_base, f_anti):
        """ĝ for the logits of one layer, ``[K, R, B, D]``; f_* are ``[R, B]``, shared by the K particles."""
        return arm_logit_gradient(u, f_base[None], f_anti[None])

    def surrogate(self, model, x, num_particles):
        uniforms, eps = [], []

        def draw(l, a):
            uniforms.append(uniform_like(a))
            eps.append(logit(uniforms[-1]))
            return (eps[-1] < a.detach()).to(a.dtype)

        logits, layers = chain(model, x, num_particles, draw)
        layer_log_q = [log_mass(a, z) for a, z in zip(logits, layers)]
        log_q = sum(layer_log_q)
        log_p = model.log_joint(x, model.join(layers))
        log_w = log_p - log_q
        f_base = logmeanexp(log_w.detach(), 0)
        per_point = wake_theta(log_p, log_q) + direct_term(log_w, log_q)
        L = len(layers)
        for l in range(L):
            with torch.no_grad():  # the antithetic branch of layer l: common u_{<l} and u_{>l}, −ε_l
                a = logits[l].detach()
                branch = layers[:l] + [(-eps[l] < a).to(a.dtype)]
                lq = sum(q.detach() for q in layer_log_q[:l]) + log_mass(a, branch[l])
                for m in range(l + 1, L):
                    a_m = model.guide_layer(m, branch[-1])
                    branch.append((eps[m] < a_m).to(a_m.dtype))
                    lq = lq + log_mass(a_m, branch[-1])
                f_anti = logmeanexp(model.log_joint(x, model.join(branch)) - lq, 0)
                weight = self.pair_weight(uniforms[l], a, layers[l], branch[l], f_base, f_anti)
            per_point = per_point + (weight * logits[l]).sum((0, -1))
        return Estimate(batch_loss(per_point), f_base.mean(-1))
