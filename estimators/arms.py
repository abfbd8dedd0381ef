"""ARMS: antithetic REINFORCE with K ≥ 2 mutually antithetic samples from a copula (Dimitriev & Zhou, 2021).

The paper: Dimitriev & Zhou, "ARMS: Antithetic-REINFORCE-Multi-Sample Gradient for Binary Variables",
ICML 2021 (arXiv 2105.14141; only its abstract was available here, so no Eq. number is verified or
cited; the formulas below are the reference code's, derived and tested here).  For z ~ Bern(σ(a))
factorial over D bits and K samples whose bits are drawn jointly per bit d from a copula with uniform
marginals, each marginal Bern(p_d), p = σ(a), and pairwise joint P(z_kd = z_jd = 1) = J(p_d) the same
for every pair k ≠ j:
    ĝ_a = 1/(K − 1) Σ_k (f(z_k) − f̄) (z_k − p) · p(1 − p) / (p − J(p)),   f̄ = (1/K) Σ_j f(z_j),
the leave-one-out REINFORCE estimator (LOORF; J = p², factor 1, for independent samples) rescaled by the
debiasing factor p(1 − p)/(p − J).  Dirichlet copula (the code's ``arms``, which its README calls the
Dirichlet copula): per bit, d ~ Dir(1, …, 1) over the K samples (d_k = e_k / Σ_j e_j, e ~ Exp(1)),
u_k = (1 − d_k)^{K−1} ~ U(0, 1) (d_k ~ Beta(1, K − 1)), and
u_k ← 1 − u_k when p ≥ ½; then z_k = 1[u_k < p] and, with m = min(p, 1 − p),
    p − J(p) = m − B(m),   B(m) = max(2 m^{1/(K−1)} − 1, 0)^{K−1}  (= P(u_k < m, u_j < m)).
K = 2: d = (v, 1 − v), so the two samples are the antithetic pair of DisARM, B = 0, the factor is σ(|a|)
and ĝ_a = ½ (f(z_1) − f(z_2)) (z_1 − z_2) σ(|a|), DisARM's estimator (Dong et al., 2020, as
``estimators/disarm.py`` states it; tested).
Why it is unbiased: Σ_k (f_k − f̄)(z_k − p) = (1/K) Σ_{k<j} (f_k − f_j)(z_k − z_j); for one pair and bit d,
given the other bits, E[(f_k − f_j)(z_kd − z_jd)] = 2 (p_d − J) E[f(z)|z_d=1 − f(z)|z_d=0], and the exact
gradient is p_d(1 − p_d) times that expectation.

The reference code (github alekdimi/arms, ``networks.py``, ``get_layer_grad_estimation`` branch
``arms``; the same lines in the double-cv and rodeo repositories' ``networks.py``): the Dirichlet copula
above, the debiasing factor p(1 − p)/(p − J + 10⁻⁶) computed in probability space (J = B(p) for p < ½,
2p − 1 + B(1 − p) otherwise), f = the single-sample ELBO, the φ-gradient Σ_d ĝ_a ∂a/∂φ only (the direct
term is dropped), θ trained with the mean over the K samples.  Its Gaussian-copula variant
(``arms_normal``, which needs the bivariate normal CDF) and its IWAE version (``get_losses_arms``) are not
implemented here.

This file: f(z) = log p_θ(x, z) − log q_φ(z|x), the ELBO's integrand (``guide_target = generative_target
= "elbo"``, any K ≥ 2); sampling in logit space (z_k = 1[ε_k < a], ε_k = ±logit u_k with the sign flipped
where a ≥ 0, logit u_k = (K − 1) log(1 − d_k) − log(1 − (1 − d_k)^{K−1}), e_k = −log(1 − uniform)); the
factor computed as σ(|a|) / (1 − B(m)/m), which equals p(1 − p)/(m − B(m)) without its rounding near
p ∈ {0, 1}; φ gets Σ_d ĝ_a ∂a/∂φ (the zero-mean direct term −(1/K) Σ_k ∇_φ log q(z_k) is dropped, as in
the reference code); θ gets (1/K) Σ_k ∇_θ log p_θ(x, z_k) (each z_k is marginally a draw of q).  Option
``variant``: ``paper`` (default) as just said; ``arms_code`` the reference code's factor with its
+10⁻⁶ guard in the denominator (biased where min(p, 1 − p) is not ≫ 10⁻⁶: the factor shrinks by
(p − J)/(p − J + 10⁻⁶)).  Deviation: one stochastic layer only (the paper's and the code's setting); a
model with several layers is refused (the copula needs one logit shared by the K samples, which the
layers below the first do not have).  Unbiased (``paper``).  The arithmetic (copula, factor, ĝ_a) is
``estimators/functional/coupled.py``'s, shared with ``estibench.grad``.
"""
import torch

from estibench.models.protocols import LAYERED_BERNOULLI

from .base import Estimate, Estimator, IncompatibleError, batch_loss
from .binary import log_mass, uniform_like
from .functional.coupled import ARMS_VARIANTS as VARIANTS
from .functional.coupled import arms_debias_factor as debias_factor
from .functional.coupled import (arms_logit_gradient, dirichlet_bivariate_cdf, dirichlet_copula_eps,
                                 dirichlet_log_uniforms)

__all__ = ["Arms", "VARIANTS", "arms_logit_gradient", "debias_factor", "dirichlet_bivariate_cdf",
           "dirichlet_copula_logits", "dirichlet_log_uniforms"]


def dirichlet_copula_logits(a: torch.Tensor, num_particles: int) -> torch.Tensor:
    """ε ``[K, *a.shape]`` such that z = 1[ε < a] are K mutually antithetic Bern(σ(a)) samples (the Dirichlet
    copula above, flipped where a ≥ 0; :func:`estimators.functional.coupled.dirichlet_copula_eps` of K i.i.d.
    uniforms drawn on a's device); each ε_k is standard logistic."""
    K = int(num_particles)
    return dirichlet_copula_eps(uniform_like(a.detach().expand(K, *a.shape)), a)


class Arms(Estimator):
    latent_types = frozenset({"bernoulli"})
    needs = frozenset({LAYERED_BERNOULLI})
    min_particles = 2
    display_name = "ARMS"
    guide_target = "elbo"
    generative_target = "elbo"
    variants = VARIANTS

    def __init__(self, variant: str = "paper"):
        super().__init__()
        if variant not in VARIANTS:
            raise IncompatibleError(f"arms: unknown variant {variant!r}; choose {' or '.join(VARIANTS)}")
        self.variant = variant

    def check(self, model, num_particles):
        super().check(model, num_particles)
        if len(model.layer_sizes) > 1:
            raise IncompatibleError(f"estimator {self.name!r} handles one stochastic layer; "
                                    f"{type(model).__name__} has {len(model.layer_sizes)}")

    def surrogate(self, model, x, num_particles):
        K = num_particles
        a = model.guide_layer(0, x)  # [R, B, D]
        z = (dirichlet_copula_logits(a, K) < a.detach()).to(a.dtype)  # [K, R, B, D]
        log_p = model.log_likelihood(x, z) + model.log_prior([z])
        f = (log_p - log_mass(a, z)).detach()  # [K, R, B]
        g = arms_logit_gradient(f, z, a, debias_factor(a, K, self.variant))
        per_point = log_p.mean(0) + (g * a).sum(-1)
        return Estimate(batch_loss(per_point), f.mean(0).mean(-1))
