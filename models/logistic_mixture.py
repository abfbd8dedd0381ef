"""The discretised logistic mixture likelihood of PixelCNN++ (Salimans, Karpathy, Chen & Kingma, ICLR 2017, §2.1–2.2).

What the paper specifies (and this module implements):

* §2.1, eq. (2): a sub-pixel value ``x`` (8 bits, 256 bins) has probability
  ``P(x | π, μ, s) = Σ_i π_i [σ((x + 0.5 − μ_i)/s_i) − σ((x − 0.5 − μ_i)/s_i)]`` under a mixture of logistics,
  with the edge cases ``x = 0`` and ``x = 255``: ``x − 0.5`` replaced by ``−∞`` and ``x + 0.5`` by ``+∞``, so the
  256 bin probabilities sum to one exactly.
* §2.2, eq. (3): the colour channels of one pixel share the mixture component (one set of weights ``π`` per pixel);
  within a component the means of later channels depend linearly on the values of earlier ones:
  ``μ_g = μ_g' + α x_r``, ``μ_b = μ_b' + β x_r + γ x_g``.  We generalise this to any number of channels ``C``:
  channel ``c`` gets ``μ_c = μ_c' + Σ_{c' < c} α_{c, c'} x_{c'}``.  The one-channel (grey / binarised) case has no
  coefficients.

Scale convention (as the authors' code, openai/pixel-cnn): an 8-bit value ``v ∈ {0, …, 255}`` is represented as
``x = 2 v / 255 − 1 ∈ [−1, 1]`` (:func:`to_unit`, and back with :func:`to_bins`); a bin is ``[x − 1/255, x + 1/255]``
(width ``2/255``).  ``x`` is compared with the mid-points between bins to decide the edges, so it must lie on that
grid; values are not checked (that would need a device sync).

Parameter layout per pixel (``P = dlm_num_params(C, K) = K (1 + 2 C + C (C − 1) / 2)`` maps; ``10 K`` for RGB, the
paper's count, and ``3 K`` for one channel), along the channel axis ``-3`` of ``params [..., P, H, W]``:
``K`` mixture logits, then ``C·K`` means (channel-major: channel 0's ``K`` components first), ``C·K`` log scales,
``K·C(C−1)/2`` coupling coefficients (pairs ``(c, c')`` in the order (1,0), (2,0), (2,1), …, so for RGB: G←R, B←R,
B←G as in the authors' code).  All leading dimensions are batch dimensions (the project's ``[R, B, …]`` replicates
included) and broadcast between ``x`` and ``params``.

Choices that are ours or come from the authors' code rather than the paper's text (re-derived, not copied):

* log scales floored at ``−7`` (``min_log_scale``) and coefficients squashed with ``tanh``, as in the authors' code;
* the interior bin probability ``log(σ(b⁺) − σ(b⁻))`` (``b^± = (x ± 1/255 − μ)/s``) is computed in log space without
  cancellation: on the side of the logistic where the CDF values are small, ``log σ(hi) + log(1 − exp(log σ(lo) −
  log σ(hi)))`` (using ``σ(b⁺) − σ(b⁻) = σ(−b⁻) − σ(−b⁺)`` when the bin lies right of the mean).  This never
  underflows where the authors' ``log(max(cdf_delta, 1e-12))`` would;
* the mid-bin density fallback ``log p(x) + log(2/255)`` (``log p(x) = z − log s − 2 softplus(z)``, ``z = (x−μ)/s``,
  the logistic's log density at the bin centre times the bin width) is used where the bin is narrow compared with the
  scale, i.e. where the CDF difference loses its precision by cancellation (large ``s``).  The authors' code switches
  on the value of the CDF difference (``< 1e-5``), which makes the sum over bins differ from one by up to ~1e-5
  (our float64 measurement over means in [−1, 1], log scales in [−7, 0]); we switch on the standardised bin width
  ``w = 2/(255 s)``: the exact difference carries a relative rounding error ``~ eps / w`` and the mid-point rule a
  relative error ``≤ w² / 24`` (``|p''/p| ≤ 1`` for the logistic), balanced at ``w = (24 eps)^(1/3)``
  (``≈ 0.014`` in float32, ``≈ 1.7e-5`` in float64); both errors are then ``~ eps^(2/3)``;
* sampling (:func:`dlm_sample`) draws the component by Gumbel-max, a logistic by inversion, and rounds it to the
  grid (which is exact sampling from the discretised distribution, edges included); later channels' means use the
  *rounded* earlier values, as the likelihood conditions on them.  (The authors' sampler clips the continuous draw
  and uses it unrounded.)
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

BINS = 256
HALF_BIN = 1.0 / (BINS - 1)          # half a bin's width on the [-1, 1] scale
MIN_LOG_SCALE = -7.0
_LN2 = math.log(2.0)


def dlm_num_params(channels: int, n_mix: int) -> int:
    """Parameter maps per pixel of a ``channels``-channel mixture of ``n_mix`` logistics: ``K (1 + 2C + C(C−1)/2)``."""
    if int(channels) != channels or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    if int(n_mix) != n_mix or n_mix < 1:
        raise ValueError(f"n_mix must be a positive integer, got {n_mix!r}")
    channels, n_mix = int(channels), int(n_mix)
    return n_mix * (1 + 2 * channels + channels * (channels - 1) // 2)


def to_unit(v: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """8-bit values ``{0, …, 255}`` → the likelihood's scale ``2 v / 255 − 1 ∈ [−1, 1]``."""
    return v.to(dtype) * (2.0 / (BINS - 1)) - 1.0


def to_bins(x: torch.Tensor) -> torch.Tensor:
    """The likelihood's scale ``[−1, 1]`` → the nearest 8-bit value (``long``)."""
    return torch.round((x + 1.0) * ((BINS - 1) / 2.0)).clamp(0, BINS - 1).long()


def _channels_from_params(n_params: int, n_mix: int) -> Optional[int]:
    c = 1
    while dlm_num_params(c, n_mix) < n_params:
        c += 1
    return c if dlm_num_params(c, n_mix) == n_params else None


def _check_params(params: torch.Tensor, n_mix: int, channels: int) -> None:
    if params.dim() < 3:
        raise ValueError(f"params must be [..., P, H, W], got shape {tuple(params.shape)}")
    need, got = dlm_num_params(channels, n_mix), params.shape[-3]
    if got != need:
        fits = _channels_from_params(got, n_mix)
        hint = f" (that fits a {fits}-channel mixture)" if fits else ""
        raise ValueError(f"a {channels}-channel mixture of {n_mix} logistics takes {need} parameter maps per pixel, "
                         f"got {got}{hint}")


def _split(params: torch.Tensor, n_mix: int, channels: int, min_log_scale: float):
    """logits ``[..., K, H, W]``, means, log scales ``[..., C, K, H, W]``, coefficients ``[..., C(C−1)/2, K, H, W]``."""
    _check_params(params, n_mix, channels)
    k, c = n_mix, channels
    lead, (h, w) = params.shape[:-3], params.shape[-2:]
    logits = params[..., :k, :, :]
    means = params[..., k:k + c * k, :, :].reshape(*lead, c, k, h, w)
    log_scales = params[..., k + c * k:k + 2 * c * k, :, :].reshape(*lead, c, k, h, w).clamp_min(min_log_scale)
    coeffs = torch.tanh(params[..., k + 2 * c * k:, :, :]).reshape(*lead, c * (c - 1) // 2, k, h, w)
    return logits, means, log_scales, coeffs


def _coupled_means(means: torch.Tensor, coeffs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``μ_c = μ_c' + Σ_{c'<c} α_{c,c'} x_{c'}`` per component; ``x [..., C, H, W]``, means ``[..., C, K, H, W]``."""
    channels = means.shape[-4]
    out, idx = [means[..., 0, :, :, :]], 0
    for c in range(1, channels):
        m = means[..., c, :, :, :]
        for cp in range(c):
            m = m + coeffs[..., idx, :, :, :] * x[..., cp:cp + 1, :, :]
            idx += 1
        out.append(m)
    return torch.stack(torch.broadcast_tensors(*out), dim=-4)


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """``log(1 − exp(d))`` for ``d < 0`` (Mächler's two branches); ``d`` is kept below 0 so gradients stay finite."""
    d = d.clamp(max=-torch.finfo(d.dtype).tiny)
    near = d > -_LN2
    a = torch.where(near, d, torch.full_like(d, -1.0))
    b = torch.where(near, torch.full_like(d, -1.0), d)
    return torch.where(near, torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(b)))


def _log_bin_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(bin of x) under one discretised logistic (eq. 2 of the paper for one component), stable everywhere."""
    inv_s = torch.exp(-log_scale)
    centred = x - mean
    plus = inv_s * (centred + HALF_BIN)
    minus = inv_s * (centred - HALF_BIN)
    mid = inv_s * centred
    # edges: P(X < x + 1/255) for v = 0 and P(X > x − 1/255) for v = 255
    log_left_edge = F.logsigmoid(plus)
    log_right_edge = F.logsigmoid(-minus)
    # interior, on the tail where the CDF values are small: σ(b⁺) − σ(b⁻) = σ(−b⁻) − σ(−b⁺)
    left = mid <= 0
    hi = torch.where(left, plus, -minus)
    lo = torch.where(left, minus, -plus)
    log_hi = F.logsigmoid(hi)
    log_delta = log_hi + _log1mexp(F.logsigmoid(lo) - log_hi)
    # mid-bin density × bin width where the bin is narrow against the scale (see the module docstring)
    log_mid = mid - log_scale - 2.0 * F.softplus(mid) + math.log(2.0 * HALF_BIN)
    tau = (24.0 * torch.finfo(x.dtype).eps) ** (1.0 / 3.0)
    interior = torch.where(2.0 * HALF_BIN * inv_s < tau, log_mid, log_delta)
    return torch.where(x < -1.0 + HALF_BIN, log_left_edge,
                       torch.where(x > 1.0 - HALF_BIN, log_right_edge, interior))


def _check_x(x: torch.Tensor, params: torch.Tensor) -> None:
    if x.dim() < 3:
        raise ValueError(f"x must be [..., C, H, W], got shape {tuple(x.shape)}")
    if x.shape[-2:] != params.shape[-2:]:
        raise ValueError(f"x is {tuple(x.shape[-2:])} pixels but params are {tuple(params.shape[-2:])}")


def dlm_component_log_probs(x: torch.Tensor, params: torch.Tensor, n_mix: int,
                            min_log_scale: float = MIN_LOG_SCALE) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mixture log weights ``[..., K, H, W]`` and per-component, per-channel conditional log probabilities
    ``log p_k(x_c | x_{<c})`` ``[..., K, C, H, W]`` (the channel count is ``x.shape[-3]``)."""
    if params.dim() < 3 or x.dim() < 3:
        raise ValueError(f"x and params must be [..., C, H, W] and [..., P, H, W], got shapes {tuple(x.shape)} "
                         f"and {tuple(params.shape)}")
    _check_x(x, params)
    channels = x.shape[-3]
    logits, means, log_scales, coeffs = _split(params, n_mix, channels, min_log_scale)
    means = _coupled_means(means, coeffs, x)
    lp = _log_bin_prob(x.unsqueeze(-3), means, log_scales)          # [..., C, K, H, W]
    return torch.log_softmax(logits, dim=-3), lp.transpose(-4, -3)


def dlm_log_prob(x: torch.Tensor, params: torch.Tensor, n_mix: int, per_pixel: bool = False,
                 min_log_scale: float = MIN_LOG_SCALE) -> torch.Tensor:
    """log p(x) of images ``x [..., C, H, W]`` (values on the grid ``2v/255 − 1``) under the mixture ``params
    [..., P, H, W]``: summed over pixels and channels (shape ``[...]``), or per pixel ``[..., H, W]``."""
    log_w, lp = dlm_component_log_probs(x, params, n_mix, min_log_scale)
    per = torch.logsumexp(log_w + lp.sum(dim=-3), dim=-3)
    return per if per_pixel else per.sum(dim=(-2, -1))


def dlm_bits_per_dim(x: torch.Tensor, params: torch.Tensor, n_mix: int) -> torch.Tensor:
    """``−log p(x) / (H W C ln 2)`` per image."""
    c, h, w = x.shape[-3:]
    return -dlm_log_prob(x, params, n_mix) / (c * h * w * _LN2)


def dlm_sample(params: torch.Tensor, n_mix: int, channels: int = 3, generator: Optional[torch.Generator] = None,
               min_log_scale: float = MIN_LOG_SCALE) -> torch.Tensor:
    """One draw ``[..., C, H, W]`` on the grid ``2v/255 − 1`` from the mixture ``params [..., P, H, W]`` (exact: a
    logistic draw rounded to its bin has the discretised law, edges included)."""
    logits, means, log_scales, coeffs = _split(params, n_mix, channels, min_log_scale)
    tiny = torch.finfo(params.dtype).eps

    def uniform(shape):
        u = torch.rand(shape, generator=generator, device=params.device, dtype=params.dtype)
        return u.clamp(tiny, 1.0 - tiny)

    k = (logits - torch.log(-torch.log(uniform(logits.shape)))).argmax(dim=-3, keepdim=True)   # [..., 1, H, W]

    def pick(t):  # [..., D, K, H, W] → [..., D, H, W] at the drawn component
        idx = k.unsqueeze(-4).expand(*t.shape[:-3], 1, *t.shape[-2:])
        return t.gather(-3, idx).squeeze(-3)

    mu, ls, al = pick(means), pick(log_scales), pick(coeffs)
    xs, idx = [], 0
    for c in range(channels):
        m = mu[..., c, :, :]
        for cp in range(c):
            m = m + al[..., idx, :, :] * xs[cp]
            idx += 1
        u = uniform(m.shape)
        y = m + torch.exp(ls[..., c, :, :]) * (torch.log(u) - torch.log1p(-u))
        xs.append(to_unit(to_bins(y), params.dtype))
    return torch.stack(xs, dim=-3)


class DiscretizedLogisticMixture:
    """The distribution given by ``params [..., P, H, W]``: ``log_prob``, ``bits_per_dim``, ``sample`` (see module)."""

    def __init__(self, params: torch.Tensor, n_mix: int, channels: int = 3, min_log_scale: float = MIN_LOG_SCALE):
        _check_params(params, n_mix, channels)
        self.params, self.n_mix, self.channels, self.min_log_scale = params, int(n_mix), int(channels), min_log_scale

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() < 3 or x.shape[-3] != self.channels:
            got = x.shape[-3] if x.dim() >= 3 else f"shape {tuple(x.shape)}"
            raise ValueError(f"this mixture is for {self.channels}-channel images [..., {self.channels}, H, W], "
                             f"got {got}")

    def log_prob(self, x: torch.Tensor, per_pixel: bool = False) -> torch.Tensor:
        self._check(x)
        return dlm_log_prob(x, self.params, self.n_mix, per_pixel, self.min_log_scale)

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        c, h, w = x.shape[-3:]
        return -self.log_prob(x) / (c * h * w * _LN2)

    def sample(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return dlm_sample(self.params, self.n_mix, self.channels, generator, self.min_log_scale)
