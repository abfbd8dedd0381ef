"""Metric functions shared by studies.  Each returns one value per replicate, ``[R]``.

The definitions of the metrics they compute are written once, in ``harness/definitions.py`` (and
printed in every report); the conventions behind the gradient-variance ones in docs/conventions.md.
"""
from __future__ import annotations

import math
from typing import Dict

import torch

from estibench.models.protocols import FACTORIAL_CATEGORICAL, UNNORMALISED_PRIOR, capabilities

from .exact import exact_objective_gradient
from .gradients import gradient_draws


def gradient_std(draws: torch.Tensor, leading_sizes: int) -> Dict[str, torch.Tensor]:
    """``draws`` ``[n, R, D]`` → paper and code normalisations of the mean gradient std."""
    D = draws.shape[-1]
    return {
        "grad_std_phi": draws.std(0, unbiased=True).sum(-1) / D,
        "grad_std_phi_code": draws.std(0, unbiased=False).sum(-1) / leading_sizes,
    }


@torch.no_grad()
def iwae_log_likelihood(model, x: torch.Tensor, num_particles: int, particle_chunk: int = 100,
                        point_chunk: int = 100) -> torch.Tensor:
    """``[R, B]`` IWAE estimates of log p(x) with K = ``num_particles``, chunked so memory stays
    ``particle_chunk × R × point_chunk × obs``.  For a model with an unnormalised prior (UNNORMALISED_PRIOR)
    the model's log Z (exact, or its estimate: the RBM-prior paper's Eq. 6) is subtracted."""
    outs = []
    for start in range(0, x.shape[1], point_chunk):
        xb = x[:, start:start + point_chunk]
        q = model.guide(xb)
        parts = []
        for k in range(0, num_particles, particle_chunk):
            z = q.sample((min(particle_chunk, num_particles - k),))
            parts.append(torch.logsumexp(model.log_joint(xb, z) - q.log_prob(z), 0))
        outs.append(torch.logsumexp(torch.stack(parts), 0) - math.log(num_particles))
    out = torch.cat(outs, 1)
    if UNNORMALISED_PRIOR in capabilities(model):
        out = out - model.log_partition().detach().to(out.dtype).unsqueeze(-1)
    return out


@torch.no_grad()
def normalised_weight_diagnostics(model, x: torch.Tensor, num_particles: int) -> dict:
    """Bachman & Precup (``002_…`` §3, Eq. 23) on K = ``num_particles`` draws from the guide: per data point
    the normalised weights w̃_k = w_k / Σ_j w_j (w = p(x, z)/q(z|x); an unnormalised prior's log Z cancels),
    their effective sample size ESS = 1 / Σ_k w̃_k² ∈ [1, K] and their resampling entropy
    E(w̃) = −Σ_k w̃_k log w̃_k ∈ [0, log K]; returns the means over the points, ``[R]`` each, as
    ``ess[K=k]`` and ``resampling_entropy[K=k]``.  The draws run on a forked RNG, so calling this leaves the
    global random stream (and hence a training run's numbers) unchanged."""
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        q = model.guide(x)
        z = q.sample((int(num_particles),))
        log_w = model.log_joint(x, z) - q.log_prob(z)  # [K, R, B]
    log_wn = log_w - torch.logsumexp(log_w, 0, keepdim=True)
    wn = log_wn.exp()
    ess = 1.0 / (wn * wn).sum(0)
    entropy = -(wn * log_wn).nan_to_num(0.0).sum(0)  # w̃ log w̃ → 0 as w̃ → 0
    K = int(num_particles)
    return {f"ess[K={K}]": ess.mean(-1), f"resampling_entropy[K={K}]": entropy.mean(-1)}


@torch.no_grad()
def active_units(model, x: torch.Tensor, threshold: float = 0.01, samples: int = 100) -> torch.Tensor:
    """``[R]`` number of active latent units over all layers.  E_q[z_u | x] is exact for the first
    layer (σ of its logits); for a higher layer l it is the mean of σ(guide_layer(l, z_{l−1})) over
    ``samples`` ancestral draws of the layers below (Monte Carlo noise of that mean has variance
    ≤ 1/(4·samples) = 0.0025, under the 0.01 threshold).  For a factorial categorical guide
    (FACTORIAL_CATEGORICAL) a unit is one categorical variable z_d, active when Σ_c Cov_x(q(z_d = c | x)) (the
    trace of the covariance of E_q[onehot(z_d) | x]) exceeds the threshold."""
    if FACTORIAL_CATEGORICAL in capabilities(model):
        probs = torch.softmax(model.guide_logits(x), -1)  # [R, B, D, C]
        return (probs.var(1, unbiased=True).sum(-1) > threshold).sum(-1).to(torch.float32)
    q = model.guide(x)
    layers = getattr(model, "layer_sizes", None)
    if layers is None or len(layers) == 1:
        means = q.mean
    else:
        probs = torch.sigmoid(q.logits)
        parts, below = [probs], torch.bernoulli(probs.expand(samples, *probs.shape))
        for l in range(1, len(layers)):
            p_l = torch.sigmoid(model.guide_layer(l, below))
            parts.append(p_l.mean(0))
            below = torch.bernoulli(p_l)
        means = torch.cat(parts, -1)
    return (means.var(1, unbiased=True) > threshold).sum(-1).to(torch.float32)


def log_mean_variance(var: torch.Tensor) -> torch.Tensor:
    """``[R, D]`` per-parameter variances → ``[R]`` log of their mean."""
    return var.mean(-1).clamp(min=1e-300).log()


class TrajectoryVariance:
    """Per-parameter variance of a stream of gradients g_1, g_2, … (tensors leading with R) from
    exponential moving averages m_n = d m_{n−1} + (1 − d) g_n and s_n = d s_{n−1} + (1 − d) g_n²
    started at 0, debiased as Adam's moments (Kingma & Ba 2015, Alg. 1): m̂ = m_n/(1 − dⁿ),
    ŝ = s_n/(1 − dⁿ), Var = ŝ − m̂² (clamped at 0).  Without the correction the variance would be
    scaled by about 1 − dⁿ (0.22 at n = 250 for d = 0.999) plus a term in m̂²."""

    def __init__(self, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.steps = 0
        self.mean = self.square = None

    def update(self, grads) -> None:
        g = [t.detach() for t in grads]
        if self.mean is None:
            self.mean = [torch.zeros_like(t) for t in g]
            self.square = [torch.zeros_like(t) for t in g]
        d, a = self.decay, 1.0 - self.decay
        torch._foreach_mul_(self.mean, d)
        torch._foreach_add_(self.mean, g, alpha=a)
        torch._foreach_mul_(self.square, d)
        torch._foreach_addcmul_(self.square, g, g, value=a)
        self.steps += 1

    def variance(self) -> torch.Tensor:
        """``[R, D]`` debiased per-parameter variances (D = all coordinates of a replicate)."""
        if self.steps == 0:
            raise ValueError("no gradients observed yet")
        w = 1.0 - self.decay ** self.steps
        R = self.mean[0].shape[0]
        return torch.cat([(s / w - (m / w) ** 2).reshape(R, -1) for m, s in zip(self.mean, self.square)],
                         1).clamp(min=0)

    def log_variance(self) -> torch.Tensor:
        """``[R]`` log of the mean debiased variance (the ``grad_logvar_ema`` metric)."""
        return log_mean_variance(self.variance())


def leading_size_sum(params) -> int:
    """The code's normaliser: Σ over φ tensors of their output size (nn.Linear's leading
    dimension; 104 for the GMM guide 1–16–16–20).  Stacked tensors store [R, in, out]."""
    return sum(int(p.shape[-1]) for p in params)


def exact_gradient_errors(model, estimator, x, num_particles, num_samples) -> Dict[str, torch.Tensor]:
    """Bias², variance and MSE of the φ-gradient per replicate against the exact gradient."""
    draws = gradient_draws(model, estimator, x, num_particles, num_samples, which="guide")  # [N, R, D]
    R = model.replicates
    exact = exact_objective_gradient(model, x, estimator.guide_target, num_particles, "guide")
    # the flat exact gradient is parameter-major; rebuild it per replicate like the draws
    pieces, start = [], 0
    for p in model.guide_parameters():
        pieces.append(exact[start:start + p.numel()].view(R, -1))
        start += p.numel()
    exact = torch.cat(pieces, dim=1)  # [R, D]
    variance = draws.var(0, unbiased=True).sum(-1)
    mean = draws.mean(0)
    bias_sq = ((mean - exact) ** 2).sum(-1) - variance / num_samples
    mse = ((draws - exact) ** 2).sum(-1).mean(0)
    return {"exact_grad/bias_sq": bias_sq, "exact_grad/variance": variance, "exact_grad/mse": mse,
            "exact_grad/norm": exact.norm(dim=-1),
            "exact_grad/rel_bias": bias_sq.clamp(min=0).sqrt() / exact.norm(dim=-1).clamp(min=1e-30)}


def resampled_proposal(log_q: torch.Tensor, log_p: torch.Tensor, num_particles, per_unit: int = 4) -> torch.Tensor:
    """The exact PMF of Bachman & Precup's resampled proposal q_p^K (``002_…`` §3, §5.3; sampling-importance-
    resampling): draw z_1 … z_K ~ q, return z_j with probability w_j / Σ_k w_k, w = p(x, z) / q(z | x).  Over C
    categories, ``log_q`` and ``log_p`` ``[..., C]`` (log q(c|x) and log p(x, c) up to a constant in c), it is
        q_p^K(c) = K q(c) E[w_c / (w_c + S)],  S = Σ_{k=2}^K w(z_k),
    and with 1/a = ∫₀^∞ e^{−ta} dt,  E[w_c / (w_c + S)] = w_c ∫₀^∞ e^{−t w_c} M(t)^{K−1} dt,  M(t) = Σ_c' q(c') e^{−t w_c'}
    (independence of the K − 1 other draws).  The integral is evaluated in float64 by the trapezoidal rule in
    s = log t, ``per_unit`` nodes per unit of s, from −max log w − 40 (below it the integrand, ≈ e^s, adds e^{−40} of
    the result) to −min log w + log 60 (above it everything decays like e^{−t w_min} < e^{−60}); the integrand is
    smooth, so the rule converges geometrically (the tests check it against enumeration of every K-tuple to 1e-12).
    K = 1 gives q; as K → ∞ it tends to p(c | x) on q's support (a category with q(c) = 0 keeps 0).
    ``num_particles``: one K (returns ``[..., C]``) or a sequence of them (returns ``[len, ..., C]``, sharing the
    grid, e^{−t w} and M(t) between them), float64."""
    many = not isinstance(num_particles, (int, float))
    Ks = [int(k) for k in (num_particles if many else [num_particles])]
    if min(Ks) < 1:
        raise ValueError(f"the resampled proposal needs K ≥ 1, got {min(Ks)}")
    log_q = torch.log_softmax(log_q.double(), -1)
    absent = torch.isneginf(log_q)  # q(c) = 0: never proposed, so never resampled
    log_w = torch.where(absent, torch.zeros_like(log_q), log_p.double() - log_q)
    log_w = log_w - torch.logsumexp(log_w + log_q, -1, keepdim=True)  # scale: E_q[w] = 1 (the ratio is scale-free)
    finite = log_w[~absent]
    lo, hi = -float(finite.max()) - 40.0, -float(finite.min()) + math.log(60.0)
    s = torch.linspace(lo, hi, max(2, int((hi - lo) * per_unit) + 1), dtype=torch.float64, device=log_q.device)
    t = s.exp().view(-1, *([1] * log_q.dim()))  # [N, 1, ..., 1]
    tw = t * log_w.exp().unsqueeze(0)  # [N, ..., C]
    log_m = torch.logsumexp(log_q.unsqueeze(0) - tw, -1, keepdim=True)  # log M(t)  [N, ..., 1]
    ds = float(s[1] - s[0])
    weights = torch.full_like(s, ds)
    weights[0] = weights[-1] = ds / 2
    base = s.view_as(t) + weights.log().view_as(t) - tw  # dt = t ds, and the trapezoid's weights
    out = []
    for K in Ks:
        if K == 1:
            out.append(log_q.exp())
            continue
        integral = torch.logsumexp(base + (K - 1) * log_m, 0)  # [..., C]
        out.append(torch.where(absent, torch.zeros_like(log_q), (math.log(K) + log_q + log_w + integral).exp()))
    return torch.stack(out) if many else out[0]
