"""Relaxed and straight-through methods of :func:`estibench.grad` (biased; f must accept relaxed values):
Concrete, straight-through, Gumbel straight-through, ReinMax, Gumbel-Rao, GST, ZGR, the DVAE smoothings and
GumBolt's relaxation."""
from __future__ import annotations

import torch
from torch.distributions import RelaxedBernoulli
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from ..base import IncompatibleError
from ..functional import gumbel_straight_through_bernoulli, straight_through, straight_through_bernoulli
from ..functional.smoothing import binary_concrete_sample, smoothed_sample
from ..gst import gst_soft
from ..gumbel_rao import gumbel_rao_soft
from ..onehot import onehot_sample
from ..reinmax import reinmax_soft
from ..zgr import zgr_bernoulli, zgr_soft

from .core import _evaluate, Method, _BERNOULLI, _CATEGORICAL, _DISCRETE, _positive


def _bernoulli_pathwise(draw):
    def run(view, f, K, **options):
        a = view.logits
        a_k = a.expand(K, *a.shape)
        z = draw(a_k, **options)
        fz = _evaluate(f, z, K, view.batch)
        return fz.mean(0), fz.detach().mean(0), z
    return run


def _concrete(view, f, K, temperature):
    a = view.logits
    tau = torch.tensor(temperature, dtype=a.dtype, device=a.device)
    if view.kind == "bernoulli":
        z = RelaxedBernoulli(tau, logits=a.expand(K, *a.shape), validate_args=False).rsample()
    else:
        z = ExpRelaxedCategorical(tau, logits=a, validate_args=False).rsample((K,)).exp()
    fz = _evaluate(f, z, K, view.batch)
    return fz.mean(0), fz.detach().mean(0), z


def _straight_through_onehot(soft_of):
    def run(view, f, K, **options):
        ell = view.logits
        y = onehot_sample(ell, K)
        z = straight_through(y, soft_of(ell, y, **options))
        fz = _evaluate(f, z, K, view.batch)
        return fz.mean(0), fz.detach().mean(0), z
    return run


def _st_bernoulli(a_k):
    return straight_through_bernoulli(a_k, torch.rand(a_k.shape, dtype=a_k.dtype, device=a_k.device))


def _gumbel_st(a_k, temperature):
    return gumbel_straight_through_bernoulli(a_k, torch.rand(a_k.shape, dtype=a_k.dtype, device=a_k.device),
                                             temperature)


def _reinmax(ell, y, temperature):
    if not temperature >= 1.0:
        raise IncompatibleError(f"estibench.grad: reinmax needs a temperature ≥ 1 (as its reference code), got "
                                f"{temperature}")
    return reinmax_soft(ell, y, temperature)


def _gumbel_rao(ell, y, samples, temperature):
    return gumbel_rao_soft(ell, y, int(samples), temperature)


def _gst(ell, y, gap, temperature):
    return gst_soft(ell, y, gap, temperature)


def _zgr(ell, y):
    return zgr_soft(ell, y)


def _zgr_bernoulli(a_k):
    return zgr_bernoulli(a_k, torch.rand(a_k.shape, dtype=a_k.dtype, device=a_k.device))


def _zgr_run(view, f, K):
    """ZGR (Shekhovtsov, 2023; ``estimators/zgr.py``): categorical latents by the straight-through form with
    :func:`estimators.zgr.zgr_soft`, Bernoulli ones by :func:`estimators.zgr.zgr_bernoulli` (DARN(½))."""
    if view.kind == "bernoulli":
        return _bernoulli_pathwise(_zgr_bernoulli)(view, f, K)
    return _straight_through_onehot(_zgr)(view, f, K)


def _smoothed(smoothing: str):
    """The DVAE smoothings on a factorial Bernoulli (``spike_exp``: Rolfe, 2016; ``overlap_exp``: DVAE++ Eq. 3;
    ``overlap_logistic``: DVAE++ App. B; ``overlap_power``: DVAE#): per particle ζ ~ q(ζ | x) = (1 − q) r(ζ|0) +
    q r(ζ|1) (DVAE++ Eq. 2) by its inverse CDF from a fresh uniform (the implicit reparameterisation gradient for
    logistic and power, :mod:`estimators.functional.smoothing`), and the pathwise gradient of mean_k f(ζ_k): unbiased
    for the smoothed objective E_ρ[f(ζ)], biased for E_q[f(z)] (the bias vanishes as β → ∞).  f gets ζ: in [0, 1],
    ℝ for the logistic; for the spike, f must be continuous at ζ = 0 (a hard 1[ζ > 0] in f makes the objective jump
    at the spike's edge, which a pathwise gradient misses: the registered ``spike_exp`` adds that boundary term for
    its own bound).  ``beta``: the registered estimator's (its final β where that anneals).  What the registered
    estimators add — the closed-form KL terms, ν = q(z = 1 | ζ) in the coupling, the marginal bound's mixture
    densities (:func:`~estimators.functional.smoothing.mixture_log_density`) — is part of a model's bound, i.e. of
    f (which may close over the logits)."""
    def run(view, f, K, beta):
        beta = _positive(smoothing, "inverse temperature beta", beta)
        a = view.logits
        a_k = a.expand(K, *a.shape)
        zeta = smoothed_sample(smoothing, a_k, torch.rand(a_k.shape, dtype=a.dtype, device=a.device), beta)
        fz = _evaluate(f, zeta, K, view.batch)
        return fz.mean(0), fz.detach().mean(0), zeta
    return run


def _gumbolt(view, f, K, temperature):
    """GumBolt's relaxation on a factorial Bernoulli (Khoshaman & Amin, 2018; PixelVAE++, Sadeghi et al., 2019,
    Eq. 4): ζ = σ((l + σ⁻¹(ρ)) / τ) per particle and the pathwise gradient of mean_k f(ζ_k), τ = 0.25 (the paper's
    and the registered ``gumbolt``'s); biased for E_q[f(z)].  On a factorial Bernoulli this is the binary Concrete
    relaxation (``concrete`` with that temperature, another draw of the noise); GumBolt's own part — the relaxed
    Boltzmann prior e^{−E(ζ)}/Z with the discrete log Z's negative phase, and the proxy q̃(ζ | x) = Σ ζ l −
    softplus(l) — is a model's (``estimators/gumbolt.py``), i.e. part of f here, except the log-Z term, whose
    gradient needs the prior's samples."""
    temperature = _positive("gumbolt", "temperature", temperature)
    a = view.logits
    a_k = a.expand(K, *a.shape)
    zeta = binary_concrete_sample(a_k, torch.rand(a_k.shape, dtype=a.dtype, device=a.device), temperature)
    fz = _evaluate(f, zeta, K, view.batch)
    return fz.mean(0), fz.detach().mean(0), zeta


#: the methods of this family, by their registry names
METHODS = (
    Method("straight_through", _BERNOULLI, _bernoulli_pathwise(_st_bernoulli), {}, unbiased=False, relaxed=True),
    Method("gumbel_st", _BERNOULLI, _bernoulli_pathwise(_gumbel_st), {"temperature": 0.5}, unbiased=False,
           relaxed=True),
    Method("concrete", _DISCRETE, _concrete, {"temperature": 0.5}, unbiased=False, relaxed=True),
    Method("reinmax", _CATEGORICAL, _straight_through_onehot(_reinmax), {"temperature": 1.0}, unbiased=False,
           relaxed=True),
    Method("gumbel_rao", _CATEGORICAL, _straight_through_onehot(_gumbel_rao), {"samples": 100, "temperature": 1.0},
           unbiased=False, relaxed=True),
    Method("gst", _CATEGORICAL, _straight_through_onehot(_gst), {"gap": 1.0, "temperature": 1.0}, unbiased=False,
           relaxed=True),
    Method("zgr", _DISCRETE, _zgr_run, {}, unbiased=False, relaxed=True),
    Method("spike_exp", _BERNOULLI, _smoothed("spike_exp"), {"beta": 5.0}, unbiased=False, relaxed=True),
    Method("overlap_exp", _BERNOULLI, _smoothed("overlap_exp"), {"beta": 12.0}, unbiased=False, relaxed=True),
    Method("overlap_power", _BERNOULLI, _smoothed("overlap_power"), {"beta": 40.0}, unbiased=False, relaxed=True),
    Method("overlap_logistic", _BERNOULLI, _smoothed("overlap_logistic"), {"beta": 12.0}, unbiased=False,
           relaxed=True),
    Method("gumbolt", _BERNOULLI, _gumbolt, {"temperature": 0.25}, unbiased=False, relaxed=True),
)
