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
    Q_d(i, j) = mean_{π∈Π} P(u_k ∈ I_i^π, u_j ∈ I_j^π),  P(u_k ≤ s, u_j ≤ t) = max(s^{1/(K−1)} + t^{1/(K−1)} − 1, 0)^{K−1}
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
C(C − 1)/2 · min(K, C)² boxes per variable and step, which makes CARMS costly at C = 20); φ gets Σ_d ĝ_d · ∂η_d/∂φ through ℓ = log q (the zero-mean direct
term −(1/K) Σ_k ∇_φ log q(z_k) dropped, as in the reference code); θ gets (1/K) Σ_k ∇_θ log p_θ(x, z_k); the
objective is the mean of the K values of f (``guide_target = generative_target = "elbo"``).  Option
``variant``: ``exact`` (default) as just said, unbiased; ``carms_code`` the reference code's smoothed and
clipped ratio (biased; labelled so in every table).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .arms import dirichlet_bivariate_cdf, dirichlet_log_uniforms
from .base import Estimate, Estimator, IncompatibleError, batch_loss
from .onehot import NEEDS, ONEHOT_LATENTS, elbo_terms, log_probs

VARIANTS = ("exact", "carms_code")
#: elements of one chunk of the [.., |Π|, C, C] pair-probability computation
CHUNK = 1 << 22


@functools.lru_cache(maxsize=None)
def orders(num_categories: int) -> torch.Tensor:
    """Π: the C(C − 1)/2 orders, ``[|Π|, C]`` (row: the category at each position), as described above."""
    C = int(num_categories)
    rows = []
    for a in range(C):
        tail = [(a + 1 + t) % C for t in range(C - 1)]
        for b in range(a + 1, C):
            i = tail.index(b)
            rows.append([a] + tail[i + 1:] + tail[:i + 1])
    return torch.tensor(rows, dtype=torch.long)


def copula_uniforms(shape, num_particles: int, like: torch.Tensor) -> torch.Tensor:
    """K mutually antithetic U(0, 1) ``[K, *shape]`` from the Dirichlet copula (ARMS's, ``estimators/arms.py``)."""
    u0 = torch.rand((int(num_particles), *shape), dtype=like.dtype, device=like.device)
    return torch.exp(dirichlet_log_uniforms(u0))


def interval_ends(q: torch.Tensor):
    """Left and right ends of every category's interval in every order of Π, in category space,
    ``[*, |Π|, C]`` each (q: ``[*, C]``)."""
    pi = orders(q.shape[-1]).to(q.device)
    shuffled = q[..., pi]                                             # [*, |Π|, C] (positions)
    right = torch.cumsum(shuffled, -1)
    left = right - shuffled
    inverse = torch.argsort(pi, -1).expand(*q.shape[:-1], *pi.shape)  # position of each category
    return left.gather(-1, inverse), right.gather(-1, inverse)


def _box(lo_i, hi_i, lo_j, hi_j, K):
    """P(u_k ∈ (s_i, t_i], u_j ∈ (s_j, t_j]) from the (K − 1)-th roots of the interval ends."""
    cdf = dirichlet_bivariate_cdf
    return cdf(hi_i, hi_j, K) - cdf(lo_i, hi_j, K) - cdf(hi_i, lo_j, K) + cdf(lo_i, lo_j, K)


def _roots(q: torch.Tensor, K: int):
    left, right = interval_ends(q.double())
    return left.clamp(0, 1).pow(1.0 / (K - 1)), right.clamp(0, 1).pow(1.0 / (K - 1))


def pair_pmf(q: torch.Tensor, num_particles: int) -> torch.Tensor:
    """Q(i, j) = P(z_k = i, z_j = j), k ≠ j, averaged over Π, ``[*, C, C]`` in float64 (q: ``[*, C]``)."""
    K = int(num_particles)
    lo, hi = _roots(q, K)                                             # [*, |Π|, C]
    P, C = lo.shape[-2], lo.shape[-1]
    step = max(1, CHUNK // (max(1, q[..., 0].numel()) * C * C))
    total = torch.zeros((*q.shape, C), dtype=torch.float64, device=q.device)
    for s in range(0, P, step):
        a, b = lo[..., s:s + step, :], hi[..., s:s + step, :]
        total = total + _box(a[..., :, None], b[..., :, None], a[..., None, :], b[..., None, :], K).sum(-3)
    return (total / P).clamp(min=0.0)


def sampled_pair_pmf(q: torch.Tensor, z: torch.Tensor, num_particles: int) -> torch.Tensor:
    """Q(z_k, z_j) for every ordered pair of the K draws, ``[K, K, *]`` in float64: the entries of
    ``pair_pmf`` that the estimator reads, at K² instead of C² boxes per order and variable."""
    K = int(num_particles)
    lo, hi = _roots(q, K)                                             # [*, |Π|, C]
    P = lo.shape[-2]
    index = z[..., None, None].expand(*z.shape, P, 1)                 # [K, *, |Π|, 1]
    lo_z = lo.expand(K, *lo.shape).gather(-1, index)[..., 0]          # [K, *, |Π|]
    hi_z = hi.expand(K, *hi.shape).gather(-1, index)[..., 0]
    step = max(1, CHUNK // (max(1, z.numel()) * K))
    total = torch.zeros((K, *z.shape), dtype=torch.float64, device=q.device)
    for s in range(0, P, step):
        a, b = lo_z[..., s:s + step], hi_z[..., s:s + step]
        total = total + _box(a[:, None], b[:, None], a[None], b[None], K).sum(-1)
    return (total / P).clamp(min=0.0)


def carms_sample(q: torch.Tensor, num_particles: int) -> torch.Tensor:
    """K coupled category indices ``[K, *q.shape[:-1]]``: one order of Π per variable, Dirichlet-copula uniforms."""
    K = int(num_particles)
    pi = orders(q.shape[-1]).to(q.device)
    with torch.no_grad():
        pick = torch.randint(pi.shape[0], q.shape[:-1], device=q.device)
        order = pi[pick]                                              # [*, C] category at each position
        right = torch.cumsum(q.gather(-1, order), -1)                 # [*, C]
        u = copula_uniforms(q.shape[:-1], K, q)                       # [K, *]
        pos = torch.searchsorted(right.expand(K, *right.shape).contiguous(), u[..., None]).clamp(max=q.shape[-1] - 1)
        return order.expand(K, *order.shape).gather(-1, pos)[..., 0]


def pair_ratio(q: torch.Tensor, z: torch.Tensor, num_particles: int, variant: str = "exact") -> torch.Tensor:
    """r(z_k, z_j) = q(z_k) q(z_j) / Q(z_k, z_j) for every ordered pair ``[K, K, *]`` (0 where z_k = z_j, so also
    on k = j); the C × C table is computed when it is the smaller computation (K > C)."""
    K, C = int(num_particles), q.shape[-1]
    if K > C:
        table = pair_pmf(q, K)                                        # [*, C, C]
        rows = table.expand(K, *table.shape).gather(-2, z[..., None, None].expand(*z.shape, 1, C))[..., 0, :]
        joint = rows[:, None].expand(K, K, *rows.shape[1:]).gather(-1, z[None, ..., None].expand(K, *z.shape, 1))[..., 0]
    else:
        joint = sampled_pair_pmf(q, z, K)                             # [K, K, *]
    qz = q.double()[None].expand(K, *q.shape).gather(-1, z[..., None])[..., 0]   # q(z_k), [K, *]
    qq = qz[:, None] * qz[None, :]
    if variant == "carms_code":
        ratio = torch.clamp((qq + 1e-3) / (joint + 1e-3), 0.01, 10.0)
    else:
        ratio = qq / joint.clamp(min=torch.finfo(torch.float64).tiny)
    return torch.where(z[:, None] == z[None, :], torch.zeros_like(ratio), ratio).to(q.dtype)


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
        diff = (f[:, None] - f[None, :])[..., None]                       # f_k − f_j, [K, K, R, B, 1]
        signal = (r * diff).sum(1) / (K * (K - 1))                        # [K, R, B, D]
        ell_z = (y * ell).sum(-1)                                         # ℓ_d(z_kd), [K, R, B, D]
        per_point = log_p.mean(0) + (signal * ell_z).sum((0, -1))
        return Estimate(batch_loss(per_point), f.mean(0).mean(-1))
