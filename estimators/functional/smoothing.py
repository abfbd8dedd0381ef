"""The DVAE smoothings of binary latents and GumBolt's relaxation, as functions of logits and noise.

A binary latent z ~ Bern(q), q = σ(l), is relaxed to a continuous ζ drawn from the mixture
    q(ζ | x) = (1 − q) r(ζ | 0) + q r(ζ | 1)                                        (DVAE++, Vahdat et al., 2018, Eq. 2)
by its inverse CDF ζ = F⁻¹(ρ; q), ρ ~ U(0, 1), with the mixture's posterior ("mixture probability")
    ν = q(z = 1 | ζ, x) = σ(l + log r(ζ|1) − log r(ζ|0))                             (DVAE++ §5),
β the inverse temperature (ζ → z as β → ∞).  The smoothings r (each sampler's docstring names its paper and equation):
spike-and-exponential (Rolfe, 2016), overlapping exponentials (DVAE++ Eq. 3), overlapping logistics (DVAE++ App. B),
power functions (DVAE#, Vahdat et al., 2018b).  GumBolt's relaxation (Khoshaman & Amin, 2018; PixelVAE++ Eq. 4) is the
binary Concrete ζ = σ((l + logit ρ)/τ), not a mixture.

One implementation: the transforms themselves are written once, in :mod:`estibench.models.smoothing` (pure functions
of tensors on stateless objects), because a model that relaxes its own binary latents (``models/conv_vae.py``) uses
them too and a model may not import an estimator (``tests/test_imports.py``); this module is the functional face of
that code, in the convention of :mod:`estimators.functional`: every function takes logits, the noise ``rho`` it is
given (nothing here draws random numbers) and β (or τ), broadcasts elementwise and returns tensors with the logits'
dtype and device, differentiable in the logits (the inverse CDF in closed form for ``spike_exp`` and ``overlap_exp``,
the implicit reparameterisation gradient for ``overlap_logistic`` and ``overlap_power``).  The registered estimators
(``spike_exp.py``, ``overlap_*.py``, ``smoothed_rbm.py``, ``gumbolt.py``) and :func:`estibench.grad` call these.

``smoothing`` arguments name a smoothing (``"spike_exp"``, ``"overlap_exp"``, ``"overlap_logistic"``,
``"overlap_power"``) or are one of :data:`estibench.models.smoothing.SMOOTHINGS`' objects.
"""
from __future__ import annotations

from typing import List, Tuple, Union

import torch

from estibench.models.smoothing import SMOOTHINGS, BinaryConcrete, Smoothing, log1mexp

Beta = Union[float, torch.Tensor]
SmoothingName = Union[str, Smoothing]

_POWER = SMOOTHINGS["overlap_power"]
_CONCRETE = BinaryConcrete()

__all__ = ["smoothed_sample", "spike_exp_sample", "overlap_exp_sample", "overlap_logistic_sample",
           "overlap_power_sample", "mixture_log_density", "mixture_posterior_logits", "overlap_power_log_density",
           "overlap_power_posterior_logits", "binary_concrete_sample", "spike_boundary_term", "gumbolt_log_weight",
           "gumbolt_pd_log_weight"]


def _get(smoothing: SmoothingName) -> Smoothing:
    if isinstance(smoothing, Smoothing):
        return smoothing
    try:
        return SMOOTHINGS[smoothing]
    except KeyError:
        raise ValueError(f"unknown smoothing {smoothing!r}; known: {', '.join(SMOOTHINGS)}") from None


# -- the relaxed samples ζ = F⁻¹(ρ; q) --------------------------------------------------------------------------------
def spike_exp_sample(logits: torch.Tensor, rho: torch.Tensor, beta: Beta) -> torch.Tensor:
    """Spike-and-exponential (Rolfe, 2016, §2; DVAE++ Eq. 2 with r(ζ|0) = δ(ζ), r(ζ|1) = β e^{βζ}/(e^β − 1) on [0, 1]):
    ζ = F⁻¹(ρ) = 0 for ρ ≤ 1 − q, else 1 + log(u + (1 − u) e^{−β})/β with u = (ρ + q − 1)/q; continuous in ρ
    (ζ → 0 at the spike's edge), differentiable in the logits (and β)."""
    return SMOOTHINGS["spike_exp"].sample(logits, rho, beta)


def overlap_exp_sample(logits: torch.Tensor, rho: torch.Tensor, beta: Beta) -> torch.Tensor:
    """Overlapping exponentials (DVAE++ Eq. 3: r(ζ|0) ∝ e^{−βζ}, r(ζ|1) ∝ e^{β(ζ−1)} on [0, 1]): ζ = F⁻¹(ρ) in the
    stable closed form of ``models/smoothing.py`` (the paper's overflows at large β); differentiable in logits and β."""
    return SMOOTHINGS["overlap_exp"].sample(logits, rho, beta)


def overlap_logistic_sample(logits: torch.Tensor, rho: torch.Tensor, beta: Beta) -> torch.Tensor:
    """Overlapping logistics (DVAE++ App. B: r(ζ|z) = Logistic(mean z, scale 1/β) on ℝ): z = 1[ρ > 1 − q] and
    ζ = z + logit(u)/β from the conditional uniform u, with the implicit reparameterisation gradient
    ∂ζ/∂l = q(1 − q)[R(ζ|0) − R(ζ|1)] / q(ζ|x) (no closed-form F⁻¹; equal to its gradient in distribution).  ζ ∈ ℝ."""
    return SMOOTHINGS["overlap_logistic"].sample(logits, rho, beta)


def overlap_power_sample(logits: torch.Tensor, rho: torch.Tensor,
                         beta: Beta) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Power functions (DVAE#, §3: λ = 1/β, R(ζ|0) = ζ^λ, r(ζ|1) = r(1 − ζ|0) on [0, 1]): (ζ, log ζ, log(1 − ζ)) with
    s = u^β from the conditional uniform u, ζ = s (z = 0) or 1 − s (z = 1), the implicit reparameterisation gradient
    on both logs.  The exact log pair is what densities need in float32 at β = 30–40, where ζ rounds to 0 or 1."""
    log_zeta, log_1mzeta = _POWER.sample_log(logits, rho, beta)
    return _POWER.zeta_from_log(log_zeta, log_1mzeta), log_zeta, log_1mzeta


def smoothed_sample(smoothing: SmoothingName, logits: torch.Tensor, rho: torch.Tensor, beta: Beta) -> torch.Tensor:
    """ζ ~ q(ζ | x) (DVAE++ Eq. 2) for the named smoothing, reparameterised in the logits: the ζ of the samplers above
    (for ``overlap_power`` its first element)."""
    return _get(smoothing).sample(logits, rho, beta)


# -- the mixture's density and posterior ----------------------------------------------------------------------------
def mixture_log_density(smoothing: SmoothingName, logits: torch.Tensor, zeta: torch.Tensor,
                        beta: Beta) -> torch.Tensor:
    """log q(ζ | x) = log[(1 − q) r(ζ|0) + q r(ζ|1)] per unit (DVAE++ Eq. 2; Eq. 5's terms).  For the spike, with
    respect to δ₀ + Lebesgue (``models/smoothing.py``); for ``overlap_power`` in float32 prefer
    :func:`overlap_power_log_density` of the exact log pair."""
    return _get(smoothing).log_q_zeta(logits, zeta, beta)


def mixture_posterior_logits(smoothing: SmoothingName, logits: torch.Tensor, zeta: torch.Tensor,
                             beta: Beta) -> torch.Tensor:
    """logit ν = logit q(z = 1 | ζ, x) = l + log r(ζ|1) − log r(ζ|0) (DVAE++ §5; ±∞ off and on the spike)."""
    return _get(smoothing).posterior_logits(logits, zeta, beta)


def overlap_power_log_density(logits: torch.Tensor, log_zeta: torch.Tensor, log_1mzeta: torch.Tensor,
                              beta: Beta) -> torch.Tensor:
    """log q(ζ | x) of the power-function mixture (DVAE#) from the exact pair (log ζ, log(1 − ζ))."""
    return _POWER.log_q_zeta_log(logits, log_zeta, log_1mzeta, beta)


def overlap_power_posterior_logits(logits: torch.Tensor, log_zeta: torch.Tensor, log_1mzeta: torch.Tensor,
                                   beta: Beta) -> torch.Tensor:
    """logit q(z = 1 | ζ, x) = l + (1/β − 1)(log(1 − ζ) − log ζ) of the power-function mixture (DVAE#), from the
    exact pair."""
    return _POWER.posterior_logits_log(logits, log_zeta, log_1mzeta, beta)


# -- GumBolt's relaxation ---------------------------------------------------------------------------------------------
def binary_concrete_sample(logits: torch.Tensor, rho: torch.Tensor, temperature: float) -> torch.Tensor:
    """GumBolt's relaxation (Khoshaman & Amin, 2018; PixelVAE++, Sadeghi et al., 2019, Eq. 4), the binary Concrete of
    Maddison et al. (2017): ζ = σ((l + σ⁻¹(ρ)) / τ), ρ clamped into (0, 1) so ρ = 0 gives a finite ζ.  P(ζ > ½) = q
    at every τ, and ζ → 1[ρ > 1 − q] as τ → 0."""
    return _CONCRETE.sample(logits, rho, 1.0 / temperature)


# -- the bounds' pieces -----------------------------------------------------------------------------------------------
def spike_boundary_term(log_w: torch.Tensor, jumps: List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """The spike's boundary term (``estimators/spike_exp.py``; Rolfe, 2016: the spike's edge ζ = 0 is its whole
    region): a zero-valued surrogate ``[R, B]`` whose gradient is Σ_{k,l,i} E[(1 − z) J q] ∂g, the part of the
    gradient of E[bound] that the pathwise derivative misses where a hard z = 1[ζ > 0] multiplies a coefficient c that
    depends on later draws.  ``log_w`` ``[K, R, B]``; ``jumps``: (z, g, c) per layer, z the hard bits, g their logits,
    c the coefficient; J = c for K = 1, log(1 − w̃_k + w̃_k e^c) for K > 1 (w̃ the self-normalised weights)."""
    out = 0.0
    with torch.no_grad():
        if log_w.shape[0] > 1:
            log_wn = (log_w - torch.logsumexp(log_w, 0, keepdim=True)).clamp(max=0.0).unsqueeze(-1)
            rest = log1mexp(log_wn)                   # log(1 − w̃_k)
    for z, g, coefficient in jumps:
        with torch.no_grad():
            c = coefficient.detach()
            jump = c if log_w.shape[0] == 1 else torch.logaddexp(log_wn + c, rest)
            weight = (1 - z) * jump * torch.sigmoid(g.detach())
        out = out + (weight * (g - g.detach())).sum((0, -1))
    return out


def gumbolt_log_weight(log_likelihood: torch.Tensor, log_prior_unnormalised: torch.Tensor,
                       log_q_proxy: torch.Tensor) -> torch.Tensor:
    """GumBolt's relaxed log-weight (PixelVAE++ Eq. 3, read as the ELBO's integrand at ζ): log p(x | ζ) − E(ζ) −
    log q̃(ζ | x), with the unnormalised Boltzmann prior e^{−E(ζ)} and the proxy q̃, the Bernoulli mass Σ ζ l −
    softplus(l) evaluated at ζ (``estimators/gumbolt.py``); log Z is subtracted outside the particles' mean."""
    return log_likelihood + log_prior_unnormalised - log_q_proxy


def gumbolt_pd_log_weight(log_likelihood: torch.Tensor, rest: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """GumBolt as PixelVAE++ trains it (§2.1, §4): log p(x | ζ) + w·[−E(ζ) − log q̃(ζ | x)] with the KL-annealing
    weight w; ``rest`` carries log q̃ with its logits held constant (the path derivative, Roeder et al., 2017, §3)."""
    return log_likelihood + kl_weight * rest
