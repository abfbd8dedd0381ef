"""Smoothing transformations for binary latents (pure math; no estimator lives here; the estimators import it
through ``estibench.estimators.smoothing``, and models that relax their own binary latents use it directly).

A binary latent z ~ Bern(q), q = σ(l), is relaxed to a continuous ζ drawn from
    q(ζ|x) = Σ_z q(z|x) r(ζ|z) = (1−q) r(ζ|0) + q r(ζ|1),                       (DVAE++ Eq. 2)
with mixture CDF F(ζ) = (1−q) R(ζ|0) + q R(ζ|1) and posterior
    q(z=1|ζ,x) = σ(l + log r(ζ|1) − log r(ζ|0)).                                  (DVAE++ §5)
β is the inverse temperature (ζ → z as β → ∞).  Transformations (docs/conventions.md):

* ``spike_exp``        Rolfe (2016): r(ζ|0) = δ(ζ), r(ζ|1) ∝ e^{βζ} on [0,1].
* ``overlap_exp``      DVAE++ Eq. 3: r(ζ|0) ∝ e^{−βζ}, r(ζ|1) ∝ e^{β(ζ−1)} on [0,1].
* ``overlap_logistic`` DVAE++ App. B: r(ζ|z) = Logistic(mean z, scale 1/β) on ℝ.
* ``overlap_power``    DVAE#: λ = 1/β, R(ζ|0) = ζ^λ, r(ζ|1) = r(1−ζ|0) on [0,1].
* :class:`BinaryConcrete` (Maddison et al., 2017), not a mixture, kept as a helper:
  ζ = σ((l + logit ρ)/τ) with τ = 1/β.

Common interface (every function elementwise, broadcasting over tensors of any shape; ``logits``
l and ``rho`` ρ ~ U(0,1) tensors, ``beta`` a python float or a broadcastable tensor; results
have the dtype and device of ``logits``; no host synchronisation):

    sample(logits, rho, beta) -> ζ                 ζ ~ q(ζ|x), differentiable w.r.t. logits
    sample_joint(logits, rho, beta) -> (z, ζ)      z ~ Bern(q) (float 0/1, no gradient), ζ ~ r(·|z)
    log_r(zeta, z, beta), cdf_r(zeta, z, beta)     the smoothing given z ∈ {0,1} (int or tensor)
    log_q_zeta(logits, zeta, beta), cdf(logits, zeta, beta)
    posterior_logits(logits, zeta, beta)           l + log r(ζ|1) − log r(ζ|0)
    dzeta_dlogits(logits, zeta, beta)              ∂F⁻¹(ρ)/∂l at ρ = F(ζ) (implicit function theorem)
    inverse_cdf(logits, rho, beta) -> ζ            F⁻¹(ρ): closed form where one exists, else
                                                   bisection on ``cdf`` with the implicit gradient

Joint-sampling convention (one uniform): z = 1[ρ > 1 − q]; the conditional uniform is
u = ρ/(1−q) when z = 0 and u = (ρ − (1−q))/q when z = 1 (carried as log u, log(1−u)), and
ζ = R⁻¹(u|z), increasing in u.  ρ is clamped to [tiny, 1 − eps/2] of its dtype so ρ = 0 or 1
(which ``torch.rand`` can return) gives finite samples.

Gradients.  ``spike_exp`` and ``overlap_exp`` have stable closed-form inverse CDFs and ``sample``
differentiates through them (logits and a β tensor both get gradients).  ``overlap_logistic``
and ``overlap_power`` have none: ``sample`` draws (z, ζ) from ``sample_joint`` and attaches the
implicit reparameterisation gradient
    ∂ζ/∂l = q(1−q) [R(ζ|0) − R(ζ|1)] / [(1−q) r(ζ|0) + q r(ζ|1)]
through a straight-through surrogate ζ̂ + g·(l − l.detach()) (value exact; first derivatives
only; β gets no gradient and a β that requires grad is refused).  It equals the inverse-CDF
gradient in distribution.  ``sample_joint`` always attaches this implicit gradient to ζ (for
``spike_exp`` its ζ *is* F⁻¹(ρ); for ``overlap_exp`` sample and sample_joint give different ζ
for the same ρ, each correctly distributed).

Densities and CDFs are written as closed forms (log-sigmoid, expm1, log1mexp) rather than via
torch.distributions, whose transforms clamp or overflow at the extremes the tests cover.

Spike (``spike_exp``): r(ζ|0) has no Lebesgue density.  Densities here are with respect to
δ₀ + Lebesgue on (0,1]: log r(ζ|0) = 0 at ζ = 0 and −∞ elsewhere; log r(ζ|1) = −∞ at ζ = 0.
Hence log q(ζ|x) = log(1−q) at ζ = 0 and log q + log r(ζ|1) for ζ > 0, and posterior_logits is
−∞ at ζ = 0 and +∞ for ζ > 0 (q(z=1|ζ>0) = 1).  Ratios of such densities (a marginal ELBO's
log p(ζ) − log q(ζ|x) with a prior built from the same r) are well defined.

Power (``overlap_power``): in float32 at β = 30–40 most z = 1 samples round to ζ = 1 and some
s = ρ^β underflow, so densities of ζ itself become ±∞.  The ``*_log`` methods carry the pair
(log ζ, log(1−ζ)) instead, which is exact; use them for densities (marginal ELBO), and ζ from
:meth:`OverlapPower.zeta_from_log` (or ``sample``) as the decoder input.
"""
from __future__ import annotations

import abc

import math
from typing import Tuple, Union

import torch
import torch.nn.functional as F

Beta = Union[float, torch.Tensor]
LN2 = math.log(2.0)


# ----------------------------------------------------------------------------- helpers

def _beta(beta: Beta, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(beta, dtype=like.dtype, device=like.device)


def _uniform(rho, like: torch.Tensor) -> torch.Tensor:
    fi = torch.finfo(like.dtype)
    return torch.as_tensor(rho, dtype=like.dtype, device=like.device).clamp(fi.tiny, 1.0 - fi.eps / 2)


def _is_one(z, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(z, device=like.device) > 0.5


def log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 − e^a) for a ≤ 0, accurate everywhere (Mächler's switch at −log 2), NaN-free gradients."""
    near = a > -LN2
    a_near = torch.where(near, a, torch.full_like(a, -LN2))
    a_far = torch.where(near, torch.full_like(a, -LN2), a)
    return torch.where(near, torch.log(-torch.expm1(a_near)), torch.log1p(-torch.exp(a_far)))


def _exp_ratio(log_num: torch.Tensor, log_den: torch.Tensor) -> torch.Tensor:
    """exp(log_num − log_den) with 0 for −∞ numerators and NaN (∞−∞) mapped to 0, overflow capped."""
    fi = torch.finfo(log_num.dtype)
    return torch.nan_to_num(torch.exp(log_num - log_den), nan=0.0, posinf=fi.max)


def _attach(value: torch.Tensor, slope: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Straight-through surrogate: the value of ``value``, the derivative ``slope`` w.r.t. logits."""
    return value.detach() + slope.detach() * (logits - logits.detach())


def _refuse_beta_grad(beta: Beta) -> None:
    if isinstance(beta, torch.Tensor) and beta.requires_grad:
        raise ValueError("implicit-gradient smoothings give gradients w.r.t. logits only; "
                         "pass beta without requires_grad")


def _split_uniform(logits: torch.Tensor, rho) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z = 1[ρ > 1−q] (bool) and the conditional uniform u as (log u, log(1−u)); no gradient."""
    with torch.no_grad():
        l = logits.detach()
        rho = _uniform(rho, l)
        l, rho = torch.broadcast_tensors(l, rho)
        lq, l1q, p0 = F.logsigmoid(l), F.logsigmoid(-l), torch.sigmoid(-l)
        z = rho > p0
        # unselected branches may hold NaN (log of a negative); torch.where discards them
        log_u = torch.where(z, torch.log(rho - p0) - lq, torch.log(rho) - l1q)
        log_1mu = torch.where(z, torch.log1p(-rho) - lq, torch.log(p0 - rho) - l1q)
        # ρ = 1−q exactly gives u = 0 or 1: keep u and 1−u in [tiny, 1) so both logs stay finite
        tiny = torch.finfo(l.dtype).tiny
        return z, log_u.clamp(math.log(tiny), -tiny), log_1mu.clamp(math.log(tiny), -tiny)


def _support_mask(zeta: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    return (zeta >= lower) & (zeta <= upper)


def _log_norm_exp(b: torch.Tensor) -> torch.Tensor:
    """log of the normaliser of the truncated exponential on [0,1]: log β − log(1 − e^{−β})."""
    return torch.log(b) - log1mexp(-b)


def _exp_cdf0(zeta: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(1 − e^{−βζ}) / (1 − e^{−β}) for ζ ∈ [0,1]."""
    return torch.expm1(-b * zeta) / torch.expm1(-b)


def _exp_cdf1(zeta: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(e^{β(ζ−1)} − e^{−β}) / (1 − e^{−β}) = e^{β(ζ−1)} (1 − e^{−βζ}) / (1 − e^{−β}) for ζ ∈ [0,1]."""
    return torch.exp(b * (zeta - 1)) * _exp_cdf0(zeta, b)


# ----------------------------------------------------------------------------- base

class Smoothing(abc.ABC):
    """Mixture smoothing q(ζ|x) = (1−q) r(ζ|0) + q r(ζ|1); subclasses give r, R and R⁻¹ (abstract)."""

    name: str = "smoothing"
    reparameterisation: str = "implicit"      # or "inverse_cdf"
    lower: float = 0.0                        # support of ζ
    upper: float = 1.0

    # --- per-transformation pieces ------------------------------------------------------
    @abc.abstractmethod
    def log_r(self, zeta: torch.Tensor, z, beta: Beta) -> torch.Tensor:
        """log r(ζ|z)."""

    @abc.abstractmethod
    def cdf_r(self, zeta: torch.Tensor, z, beta: Beta) -> torch.Tensor:
        """R(ζ|z)."""

    def _inverse_r(self, log_u, log_1mu, z, b):
        """R⁻¹(u|z) from (log u, log(1−u)); no gradient needed.  Optional: transformations that
        override ``sample_joint`` with a closed form (the spike) do not need it."""
        raise NotImplementedError(f"{type(self).__name__} samples ζ|z without R⁻¹")

    def _log_dR(self, zeta: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """log[R(ζ|0) − R(ζ|1)] (≥ 0 for every transformation here); subclasses give stable forms."""
        return torch.log((self.cdf_r(zeta, 0, b) - self.cdf_r(zeta, 1, b)).clamp(min=0))

    def _bracket(self, l: torch.Tensor, b: torch.Tensor):
        return torch.full_like(l, self.lower), torch.full_like(l, self.upper)

    # --- mixture quantities ---------------------------------------------------------------
    def log_q_zeta(self, logits, zeta, beta):
        """log q(ζ|x) = log[(1−q) r(ζ|0) + q r(ζ|1)]."""
        return torch.logaddexp(F.logsigmoid(-logits) + self.log_r(zeta, 0, beta),
                               F.logsigmoid(logits) + self.log_r(zeta, 1, beta))

    def cdf(self, logits, zeta, beta):
        """F(ζ) = (1−q) R(ζ|0) + q R(ζ|1)."""
        return torch.sigmoid(-logits) * self.cdf_r(zeta, 0, beta) + torch.sigmoid(logits) * self.cdf_r(zeta, 1, beta)

    def posterior_logits(self, logits, zeta, beta):
        """logit q(z=1|ζ,x) = l + log r(ζ|1) − log r(ζ|0)."""
        return logits + self.log_r(zeta, 1, beta) - self.log_r(zeta, 0, beta)

    def dzeta_dlogits(self, logits, zeta, beta):
        """∂F⁻¹(ρ)/∂l at ρ = F(ζ): q(1−q)[R(ζ|0) − R(ζ|1)] / q(ζ|x), evaluated in log space."""
        b = _beta(beta, logits)
        log_num = F.logsigmoid(logits) + F.logsigmoid(-logits) + self._log_dR(zeta, b)
        return _exp_ratio(log_num, self.log_q_zeta(logits, zeta, b))

    # --- sampling -------------------------------------------------------------------------
    def sample_joint(self, logits, rho, beta):
        """(z, ζ): z = 1[ρ > 1−q] ~ Bern(q) (float, no gradient) and ζ = R⁻¹(u|z) ~ r(·|z) from
        the conditional uniform u; ζ carries the implicit gradient w.r.t. logits."""
        _refuse_beta_grad(beta)
        with torch.no_grad():
            b = _beta(beta, logits)
            z, log_u, log_1mu = _split_uniform(logits, rho)
            zeta = self._inverse_r(log_u, log_1mu, z, b)
            slope = self.dzeta_dlogits(logits.detach(), zeta, b)
        return z.to(logits.dtype), _attach(zeta, slope, logits)

    def sample(self, logits, rho, beta):
        """ζ ~ q(ζ|x), reparameterised w.r.t. logits (implicit gradient unless overridden)."""
        return self.sample_joint(logits, rho, beta)[1]

    def inverse_cdf(self, logits, rho, beta, iterations: int = None):
        """F⁻¹(ρ) by bisection on :meth:`cdf` (the smallest ζ with F(ζ) ≥ ρ to working precision),
        with the implicit gradient w.r.t. logits.  Slow (``iterations`` CDF evaluations)."""
        _refuse_beta_grad(beta)
        with torch.no_grad():
            l = logits.detach()
            rho = _uniform(rho, l)
            l, rho = torch.broadcast_tensors(l, rho)
            b = _beta(beta, l)
            lo, hi = self._bracket(l, b)
            lo, hi = torch.broadcast_tensors(lo, hi)
            zeta = _bisect(lambda t: self.cdf(l, t, b), rho, lo, hi, iterations)
            slope = self.dzeta_dlogits(l, zeta, b)
        return _attach(zeta, slope, logits)

    def __repr__(self):
        return f"{type(self).__name__}()"


def _bisect(cdf, rho, lo, hi, iterations=None):
    if iterations is None:
        iterations = 128 if rho.dtype == torch.float64 else 64
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        below = cdf(mid) < rho
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------- spike-and-exp

class SpikeExp(Smoothing):
    """Spike-and-exponential (Rolfe, 2016): r(ζ|0) = δ(ζ), r(ζ|1) = β e^{βζ}/(e^β − 1) on [0,1].

    Inverse CDF: ζ = 0 if ρ ≤ 1−q, else with u = (ρ+q−1)/q, ζ = 1 + log(u + (1−u)e^{−β})/β,
    evaluated from log(1−u) = log(1−ρ) − log q (stable for any β and q).  Densities are w.r.t.
    δ₀ + Lebesgue (module docstring): posterior_logits is −∞ at ζ = 0 and +∞ for ζ > 0."""

    name = "spike_exp"
    reparameterisation = "inverse_cdf"

    def log_r(self, zeta, z, beta):
        b = _beta(beta, zeta)
        zc = zeta.clamp(0.0, 1.0)
        ninf = torch.full_like(zc, -math.inf)
        log_r1 = torch.where((zeta > 0) & (zeta <= 1), _log_norm_exp(b) + b * (zc - 1), ninf)
        log_r0 = torch.where(zeta == 0, torch.zeros_like(zc), ninf)
        return torch.where(_is_one(z, zeta), log_r1, log_r0)

    def cdf_r(self, zeta, z, beta):
        b = _beta(beta, zeta)
        r1 = _exp_cdf1(zeta.clamp(0.0, 1.0), b)
        r0 = (zeta >= 0).to(zeta.dtype)
        return torch.where(_is_one(z, zeta), r1, r0)

    def posterior_logits(self, logits, zeta, beta):
        logits, zeta = torch.broadcast_tensors(logits, zeta)
        inf = torch.full_like(zeta, math.inf)
        return torch.where(zeta > 0, inf, -inf)

    def dzeta_dlogits(self, logits, zeta, beta):
        """(1−q)(1 − R(ζ|1)) / r(ζ|1) for ζ > 0; 0 on the spike."""
        b = _beta(beta, logits)
        zc = zeta.clamp(0.0, 1.0)
        log_g = F.logsigmoid(-logits) + log1mexp(-b * (1 - zc)) - torch.log(b) - b * (zc - 1)
        g = _exp_ratio(log_g, torch.zeros_like(log_g))
        return torch.where(zeta > 0, g, torch.zeros_like(g))

    def _sample(self, logits, rho, beta):
        rho = _uniform(rho, logits)
        b = _beta(beta, logits)
        tiny = torch.finfo(logits.dtype).tiny
        with torch.no_grad():
            z = rho > torch.sigmoid(-logits)
        a = (torch.log1p(-rho) - F.logsigmoid(logits)).clamp(max=0.0)     # log(1−u) on the slab
        inner = (-torch.expm1(a) + torch.exp(a - b)).clamp(min=tiny)      # u + (1−u) e^{−β}
        zeta = (1 + torch.log(inner) / b).clamp(0.0, 1.0)
        return z, torch.where(z, zeta, torch.zeros_like(zeta))

    def sample(self, logits, rho, beta):
        return self._sample(logits, rho, beta)[1]

    def sample_joint(self, logits, rho, beta):
        z, zeta = self._sample(logits, rho, beta)
        return z.to(logits.dtype), zeta

    def inverse_cdf(self, logits, rho, beta, iterations=None):
        return self.sample(logits, rho, beta)


# ----------------------------------------------------------------------------- overlapping exponentials

class OverlapExp(Smoothing):
    """Mixture of overlapping exponentials (DVAE++ Eq. 3): r(ζ|0) ∝ e^{−βζ}, r(ζ|1) ∝ e^{β(ζ−1)}
    on [0,1], normaliser (1 − e^{−β})/β.  Posterior logits l + β(2ζ − 1).

    Inverse CDF (docs/conventions.md; the paper's closed form overflows): with m = e^{−βζ},
    B = (1−q) − q e^{−β} − ρ(1 − e^{−β}), D = √(B² + 4q(1−q)e^{−β}) (via hypot),
    log m = log(B + D) − log(2(1−q)) if B ≥ 0 else log(2q) − β − log(D − B)."""

    name = "overlap_exp"
    reparameterisation = "inverse_cdf"

    def log_r(self, zeta, z, beta):
        b = _beta(beta, zeta)
        zc = zeta.clamp(0.0, 1.0)
        val = _log_norm_exp(b) + torch.where(_is_one(z, zeta), b * (zc - 1), -b * zc)
        return torch.where(_support_mask(zeta, 0.0, 1.0), val, torch.full_like(val, -math.inf))

    def cdf_r(self, zeta, z, beta):
        b = _beta(beta, zeta)
        zc = zeta.clamp(0.0, 1.0)
        return torch.where(_is_one(z, zeta), _exp_cdf1(zc, b), _exp_cdf0(zc, b))

    def _log_dR(self, zeta, b):
        # R0 − R1 = (1 − e^{−βζ})(1 − e^{−β(1−ζ)}) / (1 − e^{−β})
        zc = zeta.clamp(0.0, 1.0)
        return log1mexp(-b * zc) + log1mexp(-b * (1 - zc)) - log1mexp(-b)

    def posterior_logits(self, logits, zeta, beta):
        b = _beta(beta, zeta)
        return logits + b * (2 * zeta - 1)

    def _inverse_r(self, log_u, log_1mu, z, b):
        zeta0 = -torch.logaddexp(log_1mu, log_u - b) / b          # 1 − R0(ζ) = ... ⇒ e^{−βζ} = (1−u) + u e^{−β}
        zeta1 = 1 + torch.logaddexp(log_u, log_1mu - b) / b       # mirror image
        return torch.where(z, zeta1, zeta0).clamp(0.0, 1.0)

    def sample(self, logits, rho, beta):
        """F⁻¹(ρ) in the stable closed form; differentiable w.r.t. logits and β."""
        rho = _uniform(rho, logits)
        b = _beta(beta, logits)
        lq, l1q = F.logsigmoid(logits), F.logsigmoid(-logits)
        B = torch.sigmoid(-logits) - torch.sigmoid(logits) * torch.exp(-b) + rho * torch.expm1(-b)
        # √(4q(1−q)e^{−β}), floored at the smallest normal so D > 0 (B = 0 at β ≳ 170 in float32)
        sqrt_c = (2 * torch.exp(0.5 * (lq + l1q - b))).clamp(min=torch.finfo(B.dtype).tiny)
        D = torch.hypot(B, sqrt_c)
        pos = B >= 0
        log_m = torch.where(pos, torch.log(B.clamp(min=0) + D) - LN2 - l1q,
                            LN2 + lq - b - torch.log(D - B.clamp(max=0)))
        return (-log_m / b).clamp(0.0, 1.0)

    def inverse_cdf(self, logits, rho, beta, iterations=None):
        return self.sample(logits, rho, beta)


# ----------------------------------------------------------------------------- overlapping logistics

class OverlapLogistic(Smoothing):
    """Mixture of logistics (DVAE++ App. B): r(ζ|z) = Logistic(mean z, scale 1/β) on ℝ,
    F(ζ) = (1−q) σ(βζ) + q σ(β(ζ−1)).  No closed-form inverse: implicit gradient, with
    R(ζ|0) − R(ζ|1) = σ(βζ) σ(β(1−ζ)) (1 − e^{−β}) (exact, no cancellation)."""

    name = "overlap_logistic"
    lower, upper = -math.inf, math.inf

    def log_r(self, zeta, z, beta):
        b = _beta(beta, zeta)
        x = b * (zeta - _is_one(z, zeta).to(zeta.dtype))
        return torch.log(b) + F.logsigmoid(x) + F.logsigmoid(-x)

    def cdf_r(self, zeta, z, beta):
        b = _beta(beta, zeta)
        return torch.sigmoid(b * (zeta - _is_one(z, zeta).to(zeta.dtype)))

    def _log_dR(self, zeta, b):
        return F.logsigmoid(b * zeta) + F.logsigmoid(b * (1 - zeta)) + log1mexp(-b)

    def _inverse_r(self, log_u, log_1mu, z, b):
        return z.to(log_u.dtype) + (log_u - log_1mu) / b

    def _bracket(self, l, b):
        span = (-math.log(torch.finfo(l.dtype).tiny) + 2.0) / b
        return torch.zeros_like(l) - span, torch.ones_like(l) + span


# ----------------------------------------------------------------------------- overlapping power functions

class OverlapPower(Smoothing):
    """Mixture of power-function distributions (DVAE#): λ = 1/β, R(ζ|0) = ζ^λ,
    r(ζ|0) = λ ζ^{λ−1}, r(ζ|1) = r(1−ζ|0), on [0,1].  Sampling: s = u^β with the conditional
    uniform u; ζ = s (z = 0) or ζ = 1 − (1−u)^β (z = 1).  Implicit gradient.

    Everything is computed from the exact pair (log ζ, log(1−ζ)); the ``*_log`` methods take
    and return that pair (use them for densities in float32 at large β), the ζ methods convert
    ζ to the pair (exact only while ζ and 1−ζ are representable)."""

    name = "overlap_power"

    # --- log-pair API ---------------------------------------------------------------------
    @staticmethod
    def zeta_from_log(log_zeta, log_1mzeta):
        """ζ from its log pair, taking whichever of ζ, 1−ζ is smaller from its own log."""
        return torch.where(log_zeta < log_1mzeta, torch.exp(log_zeta), -torch.expm1(log_1mzeta))

    @staticmethod
    def log_pair(zeta):
        """(log ζ, log(1−ζ)) for ζ ∈ [0,1] (clamped)."""
        zc = zeta.clamp(0.0, 1.0)
        return torch.log(zc), torch.log1p(-zc)

    def log_r_log(self, log_zeta, log_1mzeta, z, beta):
        b = _beta(beta, log_zeta)
        x = torch.where(_is_one(z, log_zeta), log_1mzeta, log_zeta)
        return (1 / b - 1) * x - torch.log(b)

    def cdf_r_log(self, log_zeta, log_1mzeta, z, beta):
        b = _beta(beta, log_zeta)
        return torch.where(_is_one(z, log_zeta), -torch.expm1(log_1mzeta / b), torch.exp(log_zeta / b))

    def _log_dR_log(self, log_zeta, log_1mzeta, b):
        # R0 − R1 = ζ^λ + (1−ζ)^λ − 1 ≥ 0 (λ ≤ 1); no cancellation for λ < 1
        return torch.log((torch.exp(log_zeta / b) + torch.expm1(log_1mzeta / b)).clamp(min=0))

    def log_q_zeta_log(self, logits, log_zeta, log_1mzeta, beta):
        return torch.logaddexp(F.logsigmoid(-logits) + self.log_r_log(log_zeta, log_1mzeta, 0, beta),
                               F.logsigmoid(logits) + self.log_r_log(log_zeta, log_1mzeta, 1, beta))

    def cdf_log(self, logits, log_zeta, log_1mzeta, beta):
        return (torch.sigmoid(-logits) * self.cdf_r_log(log_zeta, log_1mzeta, 0, beta)
                + torch.sigmoid(logits) * self.cdf_r_log(log_zeta, log_1mzeta, 1, beta))

    def posterior_logits_log(self, logits, log_zeta, log_1mzeta, beta):
        b = _beta(beta, log_zeta)
        return logits + (1 / b - 1) * (log_1mzeta - log_zeta)

    def _log_slope(self, logits, log_zeta, log_1mzeta, b):
        """log ∂ζ/∂l (−∞ where it vanishes)."""
        log_num = F.logsigmoid(logits) + F.logsigmoid(-logits) + self._log_dR_log(log_zeta, log_1mzeta, b)
        log_den = self.log_q_zeta_log(logits, log_zeta, log_1mzeta, b)
        out = log_num - log_den
        return torch.where(torch.isnan(out), torch.full_like(out, -math.inf), out)

    def dzeta_dlogits_log(self, logits, log_zeta, log_1mzeta, beta):
        b = _beta(beta, logits)
        return _exp_ratio(self._log_slope(logits, log_zeta, log_1mzeta, b), torch.zeros_like(log_zeta))

    def _attach_pair(self, logits, log_zeta, log_1mzeta, b):
        with torch.no_grad():
            log_g = self._log_slope(logits.detach(), log_zeta, log_1mzeta, b)
            slope_a = _exp_ratio(log_g, log_zeta)            # ∂ log ζ / ∂l = g/ζ
            slope_b = -_exp_ratio(log_g, log_1mzeta)         # ∂ log(1−ζ) / ∂l = −g/(1−ζ)
        return _attach(log_zeta, slope_a, logits), _attach(log_1mzeta, slope_b, logits)

    def sample_joint_log(self, logits, rho, beta):
        """(z, log ζ, log(1−ζ)) with the implicit gradient on both logs."""
        _refuse_beta_grad(beta)
        with torch.no_grad():
            b = _beta(beta, logits)
            z, log_u, log_1mu = _split_uniform(logits, rho)
            log_s = b * torch.where(z, log_1mu, log_u)
            log_1ms = log1mexp(log_s)
            log_zeta = torch.where(z, log_1ms, log_s)
            log_1mzeta = torch.where(z, log_s, log_1ms)
        return (z.to(logits.dtype),) + self._attach_pair(logits, log_zeta, log_1mzeta, b)

    def sample_log(self, logits, rho, beta):
        return self.sample_joint_log(logits, rho, beta)[1:]

    def inverse_cdf_log(self, logits, rho, beta, iterations=None):
        """F⁻¹(ρ) as (log ζ, log(1−ζ)) by bisection on logit ζ, with the implicit gradient."""
        _refuse_beta_grad(beta)
        with torch.no_grad():
            l = logits.detach()
            rho = _uniform(rho, l)
            l, rho = torch.broadcast_tensors(l, rho)
            b = _beta(beta, l)
            span = b * (-math.log(torch.finfo(l.dtype).tiny) + 5.0)
            lo, hi = torch.broadcast_tensors(torch.zeros_like(l) - span, torch.zeros_like(l) + span)
            t = _bisect(lambda t: self.cdf_log(l, F.logsigmoid(t), F.logsigmoid(-t), b), rho, lo, hi,
                        iterations)
            log_zeta, log_1mzeta = F.logsigmoid(t), F.logsigmoid(-t)
        return self._attach_pair(logits, log_zeta, log_1mzeta, b)

    # --- ζ API (delegates to the log pair) -------------------------------------------------
    def log_r(self, zeta, z, beta):
        val = self.log_r_log(*self.log_pair(zeta), z, beta)
        return torch.where(_support_mask(zeta, 0.0, 1.0), val, torch.full_like(val, -math.inf))

    def cdf_r(self, zeta, z, beta):
        return self.cdf_r_log(*self.log_pair(zeta), z, beta)

    def _log_dR(self, zeta, b):
        return self._log_dR_log(*self.log_pair(zeta), b)

    def log_q_zeta(self, logits, zeta, beta):
        val = self.log_q_zeta_log(logits, *self.log_pair(zeta), beta)
        return torch.where(_support_mask(zeta, 0.0, 1.0), val, torch.full_like(val, -math.inf))

    def posterior_logits(self, logits, zeta, beta):
        return self.posterior_logits_log(logits, *self.log_pair(zeta), beta)

    def sample_joint(self, logits, rho, beta):
        z, log_zeta, log_1mzeta = self.sample_joint_log(logits, rho, beta)
        return z, self.zeta_from_log(log_zeta, log_1mzeta)

    def inverse_cdf(self, logits, rho, beta, iterations=None):
        return self.zeta_from_log(*self.inverse_cdf_log(logits, rho, beta, iterations))


# ----------------------------------------------------------------------------- binary Concrete

class BinaryConcrete:
    """Binary Concrete / relaxed Bernoulli (Maddison et al., 2017, App. B; Jang et al., 2017):
    ζ = σ((l + logit ρ)/τ) with temperature τ = 1/β (the same β convention as the mixtures).
    X = logit ζ ~ Logistic(loc l/τ, scale 1/τ); P(ζ ≤ t) = σ(τ logit t − l), so P(ζ > ½) = q.
    Density (Maddison et al.): p(ζ) = τ α ζ^{−τ−1}(1−ζ)^{−τ−1} / (α ζ^{−τ} + (1−ζ)^{−τ})², α = e^l,
    evaluated as log τ + log σ(τx − l) + log σ(l − τx) − log ζ − log(1−ζ), x = logit ζ.
    Not a mixture: no r(ζ|z), no posterior.  Prefer the logit-space methods for KL terms."""

    name = "binary_concrete"

    def sample_logit(self, logits, rho, beta):
        rho = _uniform(rho, logits)
        return _beta(beta, logits) * (logits + torch.log(rho) - torch.log1p(-rho))

    def sample(self, logits, rho, beta):
        return torch.sigmoid(self.sample_logit(logits, rho, beta))

    def log_prob_logit(self, logits, x, beta):
        """log density of X = logit ζ."""
        b = _beta(beta, x)
        y = x / b - logits
        return F.logsigmoid(y) + F.logsigmoid(-y) - torch.log(b)

    def log_prob(self, logits, zeta, beta):
        inside = (zeta > 0) & (zeta < 1)
        zc = torch.where(inside, zeta, torch.full_like(zeta, 0.5))
        log_z, log_1mz = torch.log(zc), torch.log1p(-zc)
        val = self.log_prob_logit(logits, log_z - log_1mz, beta) - log_z - log_1mz
        return torch.where(inside, val, torch.full_like(val, -math.inf))

    def cdf_logit(self, logits, x, beta):
        return torch.sigmoid(x / _beta(beta, x) - logits)

    def cdf(self, logits, zeta, beta):
        zc = zeta.clamp(0.0, 1.0)
        return self.cdf_logit(logits, torch.log(zc) - torch.log1p(-zc), beta)

    def __repr__(self):
        return "BinaryConcrete()"


SMOOTHINGS = {
    "spike_exp": SpikeExp(),
    "overlap_exp": OverlapExp(),
    "overlap_logistic": OverlapLogistic(),
    "overlap_power": OverlapPower(),
}


def get(name: str) -> Smoothing:
    try:
        return SMOOTHINGS[name]
    except KeyError:
        raise ValueError(f"unknown smoothing {name!r}; known: {', '.join(SMOOTHINGS)}") from None


__all__ = ["Smoothing", "SpikeExp", "OverlapExp", "OverlapLogistic", "OverlapPower", "BinaryConcrete",
           "SMOOTHINGS", "get", "log1mexp"]
