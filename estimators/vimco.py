"""VIMCO: leave-one-out baselines for the IWAE bound (Mnih & Rezende, 2016).

The paper (Revisiting Reweighted Wake-Sleep, Le et al., §2.2, the display for ĝ_VIMCO):
    ĝ_φ = Σ_ℓ (L̂ − L̂_{−ℓ}) ∇_φ log q_φ(z_ℓ|x) + ∇_φ L̂,   L̂ = log (1/K) Σ_k w_k,
    L̂_{−ℓ} = log (1/K) (exp((1/(K−1)) Σ_{k≠ℓ} log w_k) + Σ_{k≠ℓ} w_k)
(the geometric mean of the other weights stands in for w_ℓ).  Unbiased.

The reference code (the RWS authors' GMM code): θ and φ are trained with one joint Adam; the estimator
itself is not otherwise checked against released code.

This file: the paper's estimator (its arithmetic: :func:`estimators.functional.weights.vimco`).  Needs K ≥ 2.
Unbiased.

Unnormalised priors (RBM priors; the RBM-prior paper ``000_…`` App. A, Algorithm 2): the weights are
w = p*(x, z) / q(z|x) with p* = e^{−E(z)} p(x|z), which leaves the leave-one-out signal and ∇_φ L̂
unchanged (log Z shifts every log w alike); θ gets the extra −∇_θ log Z of that paper's Eq. 5,
estimated from the model's negative samples (:func:`estimators.base.log_partition_term`), and the
objective is L̂ − log Z with the model's log Z (exact or estimated).

Structured latents (AIR; RWS §4.1: "VIMCO for the discrete choices, reparameterised gradients for the
continuous ones"; the ``ws_air`` code's ``iwae`` target): :class:`VimcoStructured`, chosen for a model with
STRUCTURED_RSAMPLE.  The continuous choices are reparameterised, z_c = g_φ(ε, z_d, x), and only the discrete
choices' score carries the leave-one-out signal:
    ĝ = Σ_ℓ (L̂ − L̂_{−ℓ}) ∇ log q_φ(z_{d,ℓ} | x, ε) + ∇ L̂(g_φ(ε, ·)),
with log q(z_d) differentiated through its parameters, including their path through earlier continuous
choices (the discrete choice at step t depends on the reparameterised choices before it), so the estimate is
unbiased for ∇ ELBO_IS^K (tested against REINFORCE on ``tests/tiny_models.TinyStructured``).
"""
from estibench.models.protocols import STRUCTURED_RSAMPLE, UNNORMALISED_PRIOR

from .base import ANY_LATENT, Estimate, Estimator, batch_loss, log_partition_term, sample_guide
from .functional.weights import importance_bound, vimco


class Vimco(Estimator):
    latent_types = ANY_LATENT
    display_name = "VIMCO"
    cost_hint = 1.5
    min_particles = 2
    handles = frozenset({UNNORMALISED_PRIOR})

    def surrogate(self, model, x, num_particles):
        _, log_q, log_p = sample_guide(model, x, num_particles)
        log_w = log_p - log_q
        bound = importance_bound(log_w)
        log_z = log_partition_term(model)  # 0 unless the prior is unnormalised
        per_point = vimco(log_w, log_q, bound) - log_z.unsqueeze(-1)
        return Estimate(batch_loss(per_point), bound.detach().mean(-1) - log_z.detach())


class VimcoStructured(Estimator):
    """VIMCO's leave-one-out signal on the discrete choices, reparameterised gradients through the continuous ones
    (the module docstring: RWS §4.1's VIMCO for AIR; Mnih & Rezende 2016, Eq. 7 on the discrete part)."""

    latent_types = frozenset({"structured"})
    needs = frozenset({STRUCTURED_RSAMPLE})
    display_name = "VIMCO"
    cost_hint = 1.5
    min_particles = 2

    def surrogate(self, model, x, num_particles):
        z, log_q_discrete, log_q_continuous = model.guide_rsample_structured(x, num_particles)
        log_w = model.log_joint(x, z) - log_q_discrete - log_q_continuous
        bound = importance_bound(log_w)
        per_point = vimco(log_w, log_q_discrete, bound)
        return Estimate(batch_loss(per_point), bound.detach().mean(-1))
