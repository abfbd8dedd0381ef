"""Coupled samples: ARMS's and CARMS's Dirichlet copula (Dimitriev & Zhou, 2021) and categorical DisARM's antithetic
stick breaking (Dong, Mnih & Tucker, 2021).  The noise is given (``u``, ``pick``), never drawn here; the estimators'
files (``estimators/arms.py``, ``carms.py``, ``categorical_disarm.py``) state the papers, the reference code, the
derivations and the deviations (neither paper's equations could be read here, so no Eq. number is cited: the formulas
are the reference code's, derived and tested in those files).

Conventions: particles lead (K); Bernoulli logits ``a`` ``[*, D]``; categorical normalised log-probabilities ℓ
``[*, D, C]`` (q = exp ℓ); f values ``[K, *]`` (no gradient).  A *score* is the term whose gradient (through ``a``,
ℓ or the stick-breaking logits λ) is the estimate of the guide's gradient; the caller adds f's own gradient.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .relaxed import logit

__all__ = ["dirichlet_log_uniforms", "dirichlet_bivariate_cdf", "dirichlet_copula_eps", "arms_debias_factor",
           "arms_logit_gradient", "carms_orders", "carms_interval_ends", "carms_pair_pmf", "carms_sampled_pair_pmf",
           "carms_categories", "carms_pair_ratio", "carms_score", "stick_breaking_logits", "antithetic_stick_breaking",
           "stick_breaking_categories", "stick_breaking_log_pair_weight", "categorical_disarm_iw_score",
           "categorical_disarm_sb_score", "CARMS_CHUNK"]

ARMS_VARIANTS = ("paper", "arms_code")
CARMS_VARIANTS = ("exact", "carms_code")
CATEGORICAL_DISARM_VARIANTS = ("iw", "sb")
#: elements of one chunk of CARMS's [.., |Π|, C, C] pair-probability computation
CARMS_CHUNK = 1 << 22


# -- the Dirichlet copula (ARMS and CARMS) ---------------------------------------------------------------------------
def dirichlet_log_uniforms(u: torch.Tensor) -> torch.Tensor:
    """log u_k ``[K, *]`` of K mutually antithetic U(0, 1) from K i.i.d. uniforms ``u`` ∈ [0, 1) (dim 0): the
    Dirichlet copula of ARMS/CARMS (Dimitriev & Zhou, 2021; the reference code's ``arms`` sampler), d = e/Σe with
    e_k = −log(1 − u_k) ~ Exp(1), u_k = (1 − d_k)^{K−1} (d_k ~ Beta(1, K − 1))."""
    K = u.shape[0]
    e = -torch.log1p(-u)  # Exp(1), finite
    d = e / e.sum(0, keepdim=True)
    return (K - 1) * torch.log1p(-d)


def dirichlet_bivariate_cdf(s_root: torch.Tensor, t_root: torch.Tensor, num_particles: int) -> torch.Tensor:
    """P(u_k ≤ s, u_j ≤ t), k ≠ j, under the Dirichlet copula of K samples (ARMS/CARMS), from s^{1/(K−1)} and
    t^{1/(K−1)}: max(s^{1/(K−1)} + t^{1/(K−1)} − 1, 0)^{K−1}."""
    return torch.clamp(s_root + t_root - 1.0, min=0.0).pow(num_particles - 1)


def dirichlet_copula_eps(u: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """ARMS's coupled logistic noise: ε ``[K, *a.shape]`` such that z = 1[ε < a] are K mutually antithetic
    Bern(σ(a)) samples, from K i.i.d. uniforms ``u`` ``[K, *a.shape]`` (the Dirichlet copula, flipped where a ≥ 0 as
    in the reference code); each ε_k is standard logistic."""
    log_u = dirichlet_log_uniforms(u)  # log u_k, u_k ~ U(0, 1)
    eps = log_u - torch.log(-torch.expm1(log_u))  # logit u_k
    return torch.where(a.detach() < 0, eps, -eps)


# -- ARMS (Bernoulli) ------------------------------------------------------------------------------------------------
def arms_debias_factor(a: torch.Tensor, num_particles: int, variant: str = "paper") -> torch.Tensor:
    """ARMS's debiasing factor p(1 − p) / (p − J(p)) per logit, p = σ(a), J the pairwise joint of the Dirichlet
    copula (``estimators/arms.py``): ``paper`` as σ(|a|)/(1 − B(m)/m), m = min(p, 1 − p); ``arms_code`` the reference
    code's p(1 − p)/(p − J + 10⁻⁶) in probability space (biased)."""
    K = int(num_particles)
    a = a.detach()
    if variant == "arms_code":  # the reference code's arithmetic, in probability space
        p = torch.sigmoid(a)

        def bivariate(t):
            root = t.pow(1.0 / (K - 1))
            return dirichlet_bivariate_cdf(root, root, K)

        joint = torch.where(p < 0.5, bivariate(p), 2 * p - 1 + bivariate(1 - p))
        return p * (1 - p) / (p - joint + 1e-6)
    log_m = torch.nn.functional.logsigmoid(-a.abs())  # m = min(p, 1 − p)
    root = torch.exp(log_m / (K - 1))
    B = dirichlet_bivariate_cdf(root, root, K)
    ratio = B / torch.exp(log_m).clamp_min(torch.finfo(a.dtype).tiny)  # B(m)/m; B = 0 wherever m is tiny
    return torch.sigmoid(a.abs()) / (1 - ratio)


def arms_logit_gradient(f: torch.Tensor, z: torch.Tensor, a: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """ARMS (Dimitriev & Zhou, 2021; ``estimators/arms.py``): ĝ_a = 1/(K − 1) Σ_k (f(z_k) − f̄)(z_k − σ(a))·factor,
    ``[*a.shape]``, from f ``[K, *]``, coupled samples z ``[K, *, D]``, logits a and ``arms_debias_factor``."""
    K = f.shape[0]
    centred = (f - f.mean(0, keepdim=True)).unsqueeze(-1)
    return (centred * (z - torch.sigmoid(a.detach()))).sum(0) * factor / (K - 1)


# -- CARMS (categorical) ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def carms_orders(num_categories: int) -> torch.Tensor:
    """CARMS's Π: the C(C − 1)/2 orders of the categories, ``[|Π|, C]`` (row: the category at each position); every
    unordered pair {a < b} once at the two ends (the reference code's ``_get_permutations``;
    ``estimators/carms.py``)."""
    C = int(num_categories)
    rows = []
    for a in range(C):
        tail = [(a + 1 + t) % C for t in range(C - 1)]
        for b in range(a + 1, C):
            i = tail.index(b)
            rows.append([a] + tail[i + 1:] + tail[:i + 1])
    return torch.tensor(rows, dtype=torch.long)


def carms_interval_ends(q: torch.Tensor):
    """Left and right ends of every category's interval in every order of Π, in category space,
    ``[*, |Π|, C]`` each (q: ``[*, C]``)."""
    pi = carms_orders(q.shape[-1]).to(q.device)
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
    left, right = carms_interval_ends(q.double())
    return left.clamp(0, 1).pow(1.0 / (K - 1)), right.clamp(0, 1).pow(1.0 / (K - 1))


def carms_pair_pmf(q: torch.Tensor, num_particles: int) -> torch.Tensor:
    """CARMS's pair pmf Q(i, j) = P(z_k = i, z_j = j), k ≠ j, averaged over Π, ``[*, C, C]`` in float64
    (q: ``[*, C]``)."""
    K = int(num_particles)
    lo, hi = _roots(q, K)                                             # [*, |Π|, C]
    P, C = lo.shape[-2], lo.shape[-1]
    step = max(1, CARMS_CHUNK // (max(1, q[..., 0].numel()) * C * C))
    total = torch.zeros((*q.shape, C), dtype=torch.float64, device=q.device)
    for s in range(0, P, step):
        a, b = lo[..., s:s + step, :], hi[..., s:s + step, :]
        total = total + _box(a[..., :, None], b[..., :, None], a[..., None, :], b[..., None, :], K).sum(-3)
    return (total / P).clamp(min=0.0)


def carms_sampled_pair_pmf(q: torch.Tensor, z: torch.Tensor, num_particles: int) -> torch.Tensor:
    """Q(z_k, z_j) for every ordered pair of the K draws, ``[K, K, *]`` in float64: the entries of
    ``carms_pair_pmf`` that the estimator reads, at K² instead of C² boxes per order and variable."""
    K = int(num_particles)
    lo, hi = _roots(q, K)                                             # [*, |Π|, C]
    P = lo.shape[-2]
    index = z[..., None, None].expand(*z.shape, P, 1)                 # [K, *, |Π|, 1]
    lo_z = lo.expand(K, *lo.shape).gather(-1, index)[..., 0]          # [K, *, |Π|]
    hi_z = hi.expand(K, *hi.shape).gather(-1, index)[..., 0]
    step = max(1, CARMS_CHUNK // (max(1, z.numel()) * K))
    total = torch.zeros((K, *z.shape), dtype=torch.float64, device=q.device)
    for s in range(0, P, step):
        a, b = lo_z[..., s:s + step], hi_z[..., s:s + step]
        total = total + _box(a[:, None], b[:, None], a[None], b[None], K).sum(-1)
    return (total / P).clamp(min=0.0)


def carms_categories(q: torch.Tensor, pick: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """CARMS's K coupled category indices ``[K, *q.shape[:-1]]`` from the noise: ``pick`` ``[*q.shape[:-1]]``, the
    index of each variable's order in Π (uniform), and ``u`` ``[K, *q.shape[:-1]]``, K Dirichlet-copula uniforms
    (``exp(dirichlet_log_uniforms(·))``): z_k = the category whose interval of the order holds u_k.  No gradient."""
    K = u.shape[0]
    pi = carms_orders(q.shape[-1]).to(q.device)
    with torch.no_grad():
        order = pi[pick]                                              # [*, C] category at each position
        right = torch.cumsum(q.gather(-1, order), -1)                 # [*, C]
        pos = torch.searchsorted(right.expand(K, *right.shape).contiguous(), u[..., None]).clamp(max=q.shape[-1] - 1)
        return order.expand(K, *order.shape).gather(-1, pos)[..., 0]


def carms_pair_ratio(q: torch.Tensor, z: torch.Tensor, num_particles: int, variant: str = "exact") -> torch.Tensor:
    """CARMS's r(z_k, z_j) = q(z_k) q(z_j) / Q(z_k, z_j) for every ordered pair ``[K, K, *]`` (0 where z_k = z_j, so
    also on k = j); ``carms_code``: the reference code's clip((qq + 10⁻³)/(Q + 10⁻³), 0.01, 10) (biased).  The C × C
    table is computed when it is the smaller computation (K > C)."""
    K, C = int(num_particles), q.shape[-1]
    if K > C:
        table = carms_pair_pmf(q, K)                                  # [*, C, C]
        rows = table.expand(K, *table.shape).gather(-2, z[..., None, None].expand(*z.shape, 1, C))[..., 0, :]
        index = z[None, ..., None].expand(K, *z.shape, 1)
        joint = rows[:, None].expand(K, K, *rows.shape[1:]).gather(-1, index)[..., 0]
    else:
        joint = carms_sampled_pair_pmf(q, z, K)                       # [K, K, *]
    qz = q.double()[None].expand(K, *q.shape).gather(-1, z[..., None])[..., 0]   # q(z_k), [K, *]
    qq = qz[:, None] * qz[None, :]
    if variant == "carms_code":
        ratio = torch.clamp((qq + 1e-3) / (joint + 1e-3), 0.01, 10.0)
    else:
        ratio = qq / joint.clamp(min=torch.finfo(torch.float64).tiny)
    return torch.where(z[:, None] == z[None, :], torch.zeros_like(ratio), ratio).to(q.dtype)


def carms_score(f: torch.Tensor, ratio: torch.Tensor, ell_z: torch.Tensor) -> torch.Tensor:
    """CARMS (Dimitriev & Zhou, 2021; the reference code's ``matrix_grad``): Σ_k Σ_d ĝ_kd ℓ_d(z_kd), ``[*]``, whose
    gradient through ℓ is ĝ = 1/(K(K − 1)) Σ_k Σ_{j≠k} r(z_k, z_j)(f(z_k) − f(z_j))(e_{z_k} − q) per variable; f
    ``[K, *]``, ``ratio`` ``[K, K, *, D]`` (``carms_pair_ratio``), ℓ at the draws ``ell_z`` ``[K, *, D]``."""
    K = f.shape[0]
    diff = (f[:, None] - f[None, :])[..., None]                       # f_k − f_j, [K, K, *, 1]
    signal = (ratio * diff).sum(1) / (K * (K - 1))                    # [K, *, D]
    return (signal * ell_z).sum((0, -1))


# -- categorical DisARM (antithetic stick breaking) ------------------------------------------------------------------
def stick_breaking_logits(sorted_ell: torch.Tensor) -> torch.Tensor:
    """Categorical DisARM's stick-breaking logits (Dong, Mnih & Tucker, 2021; the reference code's
    ``convert_softmax_logits_to_stickbreaking``): λ_i = log q(i) − log Σ_{j>i} q(j) for i < C, ``[*, C − 1]`` (the
    logits of σ_i = q(i)/Σ_{j≥i} q(j)), from the log-probabilities in the order of stick breaking."""
    tail = torch.logcumsumexp(sorted_ell.flip(-1), -1).flip(-1)       # log Σ_{j≥i} q(j)
    return sorted_ell[..., :-1] - tail[..., 1:]


def antithetic_stick_breaking(u: torch.Tensor, lam: torch.Tensor):
    """K antithetic stick-breaking pairs (Dong, Mnih & Tucker, 2021) from uniforms ``u`` ``[K, *lam.shape]`` and the
    (detached) logits λ ``[*, C − 1]``: the bits b = 1[logit u < λ], b̃ = 1[−logit u < λ] ``[K, *, C − 1]`` and the
    category positions z, z̃ ``[K, *]`` (the first bit set; C − 1 if none).  No gradient."""
    with torch.no_grad():
        eps = logit(u)
        b = (eps < lam).to(lam.dtype)
        bt = (-eps < lam).to(lam.dtype)
        ones = torch.ones_like(b[..., :1])
        z = torch.cat([b, ones], -1).argmax(-1)                    # argmax returns the first maximum
        zt = torch.cat([bt, ones], -1).argmax(-1)
    return b, bt, z, zt


def stick_breaking_categories(order: torch.Tensor, z: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
    """The categories ``[2, K, *]`` of the positions z, z̃ ``[K, *]`` in ``order`` ``[*, C]`` (the category at each
    position of the stick)."""
    K = z.shape[0]
    order_k = order.expand(K, *order.shape)
    return torch.stack([order_k.gather(-1, z[..., None]), order_k.gather(-1, zt[..., None])]).squeeze(-1)


def stick_breaking_log_pair_weight(lam: torch.Tensor, z: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
    """Categorical DisARM's importance weight, log q(z)q(z̃)/p(z, z̃) under the antithetic stick-breaking coupling
    (σ_i ≤ ½), ``[K, *]``: Σ_{i<m} [2 log(1 − σ_i) − log(1 − 2σ_i)] + log(1 − σ_m), m = min(z, z̃) (clamped to
    C − 2: at m = C − 1 the pair agrees and the weight is not used)."""
    tiny = torch.finfo(lam.dtype).tiny
    log_1m = -F.softplus(lam)                                         # log(1 − σ)
    log_1m2 = torch.log(torch.tanh(-0.5 * lam).clamp(min=tiny))       # log(1 − 2σ) = log tanh(−λ/2)
    per_bit = 2.0 * log_1m - log_1m2
    before = torch.cumsum(per_bit, -1) - per_bit                      # Σ_{j<i}
    m = torch.minimum(z, zt).clamp(max=lam.shape[-1] - 1)[..., None]
    shape = (*z.shape, lam.shape[-1])                                  # the particle dimension in front
    return (before.expand(shape).gather(-1, m) + log_1m.expand(shape).gather(-1, m)).squeeze(-1)


def categorical_disarm_iw_score(f_base: torch.Tensor, f_anti: torch.Tensor, lam: torch.Tensor, z: torch.Tensor,
                                zt: torch.Tensor, lq_base: torch.Tensor, lq_anti: torch.Tensor) -> torch.Tensor:
    """Categorical DisARM, importance-weighted (``iw``; the reference code's ``--importance_weight``): the mean over
    the K pairs of Σ_d ½ w_d (f(z) − f(z̃)) (log q_d(z_d) − log q_d(z̃_d)), ``[*]``, whose gradient through log q is the
    estimate; f ``[K, *]``, λ ``[*, D, C − 1]`` (ascending order, σ_i ≤ ½), positions z, z̃ ``[K, *, D]``, the
    per-variable log q at the two draws ``lq_*`` ``[K, *, D]``."""
    diff = f_base - f_anti                                            # [K, *]
    w = torch.exp(stick_breaking_log_pair_weight(lam.detach(), z, zt))  # [K, *, D]
    signal = torch.where(z != zt, 0.5 * w * diff[..., None], torch.zeros_like(w))
    return (signal * (lq_base - lq_anti)).sum(-1).mean(0)


def categorical_disarm_sb_score(f_base: torch.Tensor, f_anti: torch.Tensor, lam: torch.Tensor, b: torch.Tensor,
                                bt: torch.Tensor, z: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
    """Categorical DisARM on the stick-breaking bits (``sb``): the mean over the K pairs of Σ_{d,i} ĝ_di λ_di, ``[*]``,
    ĝ = DisARM's ½(f(z) − f(z̃))·1[b_i ≠ b̃_i]·(−1)^{b̃_i}·σ(|λ_i|) on bits both draws reach, each draw's REINFORCE
    term ½(f_own − f_other)(b_i − σ_i) on bits one draw reaches; λ ``[*, D, C − 1]`` (differentiable), bits
    ``[K, *, D, C − 1]``, positions ``[K, *, D]``."""
    diff = f_base - f_anti                                            # [K, *]
    lam0 = lam.detach()
    bits = torch.arange(lam.shape[-1], device=z.device)
    reach, reach_t = bits <= z[..., None], bits <= zt[..., None]      # [K, *, D, C − 1]
    shared, only, only_t = reach & reach_t, reach & ~reach_t, reach_t & ~reach
    sig = torch.sigmoid(lam0)
    half = 0.5 * diff[..., None, None]
    signal = (shared * half * (b != bt) * (1.0 - 2.0 * bt) * torch.sigmoid(lam0.abs())
              + only * half * (b - sig) - only_t * half * (bt - sig))
    return (signal * lam).sum((-1, -2)).mean(0)
