"""Antithetic pairs for Bernoulli latents: ARM and DisARM's per-bit logit gradients."""
from __future__ import annotations

import torch


def arm_logit_gradient(u: torch.Tensor, f_base: torch.Tensor, f_anti: torch.Tensor) -> torch.Tensor:
    """ARM (Yin & Zhou, 2019, §2, as restated by Dong et al., 2020): ĝ_a = (f(b̃) − f(b)) (u − ½) per bit, with
    b = 1[u < σ(a)], b̃ = 1[1 − u < σ(a)].  ``u`` ``[..., D]``; ``f_*`` broadcastable to ``u.shape[:-1]``."""
    return (f_anti - f_base)[..., None] * (u - 0.5)


def disarm_logit_gradient(a: torch.Tensor, b: torch.Tensor, b_anti: torch.Tensor, f_base: torch.Tensor,
                          f_anti: torch.Tensor) -> torch.Tensor:
    """DisARM (Dong, Mnih & Tucker, 2020, Eq. 5): ĝ_a = ½ (f(b) − f(b̃)) (−1)^{b̃} 1[b ≠ b̃] σ(|a|) per bit, ARM with
    the augmentation integrated out.  ``a``, ``b``, ``b_anti`` ``[..., D]``; ``f_*`` broadcastable to
    ``a.shape[:-1]``."""
    differ = (b != b_anti).to(a.dtype)
    sign = 1.0 - 2.0 * b_anti
    return 0.5 * (f_base - f_anti)[..., None] * sign * differ * torch.sigmoid(a.abs())
