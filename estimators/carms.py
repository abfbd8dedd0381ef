"""CARMS: categorical antithetic REINFORCE with K ≥ 2 samples from a copula (Dimitriev & Zhou, 2021).

The paper: Dimitriev & Zhou, "CARMS: Categorical-Antithetic-REINFORCE Multi-Sample Gradient Estimator",
NeurIPS 2021 (arXiv 2110.14002; only its abstract could be read here, so no Eq. number is verified or cited;
the construction and formula below are the reference code's, with the unbiasedness derived here).  It is
ARMS (``estimators/arms.py``) for categorical variables.  For each categorical z_d ∈ {1..C} with q_d = softmax,
the K samples share one random order π of the categories (drawn uniformly from a set Π of C(C − 1)/2
orders: every unordered pair of categories {a < b} once at the two ends, a first and b last, the others in
between in cyclic order from a + 1, rotated so that b is last: the reference code's ``_get_permutations``),
which cuts [0, 1] into consecutive intervals I_c of lengths q_d(c) in that order; K uniforms u_k from the
Dirichlet copula (d ~ Dir(1, …, 1) over the K samples, u_k = (1 − d_k)^{K−1}, as in ARMS; mutually antithetic,
each U(0, 1)) give z_kd = the c with u_k ∈ I_c.  Each z_kd is a draw of q_d; a pair (z_kd, z_jd), k ≠ j, has the
joint pmf
    Q_d(i, j) = mean_{π∈Π} P(u_k ∈ I_i^π, u_j ∈ I_j^π),
    P(u_k ≤ s, u_j ≤ t) = max(s^{1/(K−1)} + t^{1/(K−1)} − 1, 0)^{K−1}
(the Dirichlet copula's bivariate CDF; at K = 2 it is max(s + t − 1, 0), the antithetic pair u, 1 − u).  With
r_d(i, j) = q_d(i) q_d(j) / Q_d(i, j) the estimator of the gradient with respect to the logits η_d is
    ĝ_d = 1/(K(K − 1)) Σ_k Σ_{j≠k} r_d(z_kd, z_jd) (f(z_k) − f(z_j)) (e_{z_kd} − q_d)
(the code's ``matrix_grad``).  Why it is unbiased: the orders and copulas of different variables are
independent, so for one ordered pair (k, j) the other variables' values z_k,−d and z_j,−d are each distributed
as q_−d whatever (z_kd, z_jd); the weight turns Q_d into q_d ⊗ q_d, so the expectation is
Σ_{i,l} q(i) q(l) (E f(i, ·) − E f(l, ·))(e_i − q) = Σ_i q(i) E f(i, ·)(e_i − q) − 0 = ∇_η E_q[f], provided
Q_d(i, l) > 0 wherever i ≠ l (every pair sits at the two ends of one order, where u ≤ s_a and u' ≥ 1 − s_b
have positive probability).  Pairs with z_kd = z_jd cancel exactly against their mirror (j, k) (r is
symmetric), so r_d(i, i) is never needed and is set to 0.

The reference code (github alekdimi/carms, ``vae.py`` ``CategoricalVAE.get_logits_gradients`` /
``matrix_grad`` with ``grad_type='carms'``, ``antithetic.py`` ``InverseCategorical`` (unweighted: the order is
uniform over Π), ``copulas.py`` ``Dirichlet`` (not inverted)): read, not copied.  It computes the ratio as
clip((q(i) q(j) + 10⁻³)/(Q(i, j) + 10⁻³), 0.01, 10) in float32, which is biased wherever a pair's probability is
not ≫ 10⁻³ or the ratio leaves [0.01, 10]; it trains the encoder with the logits gradient only (the direct
term dropped), the decoder and prior with the mean over the K samples of ∇ ELBO.  Its other samplers
(``ecarms``: the joint estimated by Monte Carlo; ``sbcarms``: stick breaking; the weighted order) are not
implemented here.

This file: f(y) = log p_θ(x, y) − log q_φ(y|x), the ELBO's integrand, at one-hot codes (``estimators/onehot.py``:
any model with the FACTORIAL_CATEGORICAL interface, the GMM with D = 1 and the categorical SBNs), K ≥ 2 samples
(K evaluations of f); Q_d computed exactly in float64 over all of Π at the sampled pairs (chunked;
C(C − 1)/2 · min(K, C)² boxes per variable and step, which makes CARMS costly at C = 20); φ gets Σ_d ĝ_d · ∂η_d/∂φ
through ℓ = log q (the zero-mean direct
term −(1/K) Σ_k ∇_φ log q(z_k) dropped, as in the reference code); θ gets (1/K) Σ_k ∇_θ log p_θ(x, z_k); the
objective is the mean of the K values of f (``guide_target = generative_target = "elbo"``).  Option
``variant``: ``exact`` (default) as just said, unbiased; ``carms_code`` the reference code's smoothed and
clipped ratio (biased; labelled so in every table).  The arithmetic (orders, sampler from given noise, pair pmf,
ratio, score) is ``estimators/functional/coupled.py``'s, shared with ``estibench.grad``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Estimate, Estimator, IncompatibleError, batch_loss
from .functional.coupled import CARMS_CHUNK as CHUNK  # noqa: F401 (re-exported)
from .functional.coupled import CARMS_VARIANTS as VARIANTS
from .functional.coupled import carms_interval_ends as interval_ends  # noqa: F401
from .functional.coupled import carms_orders as orders
from .functional.coupled import carms_pair_pmf as pair_pmf  # noqa: F401
from .functional.coupled import carms_pair_ratio as pair_ratio
from .functional.coupled import carms_sampled_pair_pmf as sampled_pair_pmf  # noqa: F401
from .functional.coupled import carms_categories, carms_score, dirichlet_log_uniforms
from .onehot import NEEDS, ONEHOT_LATENTS, elbo_terms, log_probs


def copula_uniforms(shape, num_particles: int, like: torch.Tensor) -> torch.Tensor:
    """K mutually antithetic U(0, 1) ``[K, *shape]`` from the Dirichlet copula (ARMS's, ``estimators/arms.py``)."""
    u0 = torch.rand((int(num_particles), *shape), dtype=like.dtype, device=like.device)
    return torch.exp(dirichlet_log_uniforms(u0))


def carms_sample(q: torch.Tensor, num_particles: int) -> torch.Tensor:
    """K coupled category indices ``[K, *q.shape[:-1]]``: one order of Π per variable (uniform), Dirichlet-copula
    uniforms (:func:`estimators.functional.coupled.carms_categories` of the noise drawn here)."""
    K = int(num_particles)
    with torch.no_grad():
        pick = torch.randint(orders(q.shape[-1]).shape[0], q.shape[:-1], device=q.device)
        u = copula_uniforms(q.shape[:-1], K, q)                       # [K, *]
    return carms_categories(q, pick, u)


class Carms(Estimator):
    display_name = "CARMS"
    latent_types = ONEHOT_LATENTS
    needs = NEEDS
    min_particles = 2
    guide_target = "elbo"
    generative_target = "elbo"
    variants = VARIANTS

    def __init__(self, variant: str = "exact"):
        super().__init__()
        if variant not in VARIANTS:
            raise IncompatibleError(f"carms: unknown variant {variant!r}; choose {' or '.join(VARIANTS)}")
        self.variant = variant

    def surrogate(self, model, x, num_particles):
        K = num_particles
        ell = log_probs(model, x)                                         # [R, B, D, C]
        q = ell.detach().exp()
        z = carms_sample(q, K)                                            # [K, R, B, D]
        y = F.one_hot(z, ell.shape[-1]).to(ell.dtype)
        log_p, lq = elbo_terms(model, x, ell, y)                          # [K, R, B]
        f = (log_p - lq).detach()
        r = pair_ratio(q, z, K, self.variant)                             # [K, K, R, B, D]
        ell_z = (y * ell).sum(-1)                                         # ℓ_d(z_kd), [K, R, B, D]
        per_point = log_p.mean(0) + carms_score(f, r, ell_z)
        return Estimate(batch_loss(per_point), f.mean(0).mean(-1))
