"""Control variates on top of RLOO for Bernoulli latents that use f's gradient at the samples: double control
variates (Titsias & Shi, 2022) and RODEO's discrete-Stein-operator control variates (Shi et al., 2022).

Notation: logits a ``[*, D]`` of q(z) = Π_d Bern(z_d; σ(a_d)), K independent samples z ``[K, *, D]`` (binary), f
values ``[K, *]`` and g = ∇_z f at the samples ``[K, *, D]`` (f differentiated as a function of real z); the
result is ĝ_a ``[*, D]``, the estimate of ∇_a E_q[f] without f's direct dependence on a.  Its dependence on the
coefficients and networks passed in is kept (differentiable), so a caller can train them by minimising ĝ_a²; in a,
z, f, g it is meant to be held fixed (pass them detached).  K ≥ 2.  The reference code and the unbiasedness
argument are in ``estimators/double_cv.py`` and ``estimators/rodeo.py``.
"""
from __future__ import annotations

from typing import Callable

import torch

from .score import leave_one_out


def double_cv_logit_gradient(a: torch.Tensor, z: torch.Tensor, f: torch.Tensor, g: torch.Tensor,
                             alpha: torch.Tensor) -> torch.Tensor:
    """Double control variates (Titsias & Shi, 2022; the reference code's ``double_cv`` branch, paper Eq. numbers
    not verified): with θ = σ(a), s_k = z_k − θ, h_k = ḡ_{−k}ᵀ s_k (ḡ_{−k} the mean of g over the other samples),
        ĝ_a = (1/K) Σ_k [f_k + α h_k − (1/(K−1)) Σ_{j≠k} (f_j + α h_j)] s_k − α ḡ ⊙ θ(1 − θ).
    ``alpha`` ``[..., 1]``, broadcast against a (e.g. ``[R, 1, 1]`` per replicate, ``[1]`` for one scalar).
    Unbiased for every α; α = 0 is RLOO."""
    theta = torch.sigmoid(a)
    s = z - theta  # [K, *, D]
    h = (leave_one_out(g) * s).sum(-1)  # [K, *]
    signal = f + alpha[..., 0] * h
    centred = (signal - leave_one_out(signal)).unsqueeze(-1)
    return (centred * s).mean(0) - alpha * g.mean(0) * theta * (1 - theta)


def stein_control_values(z: torch.Tensor, f: torch.Tensor, g: torch.Tensor, control: Callable):
    """RODEO's control function of every sample k, H_k(y) = (1/(K−1)) Σ_{j≠k} NN_ψ(g_jᵀ (y − z_j), f_j), at
    y = z_k and at its D single-bit flips z_k^{(i)} (g_jᵀ(z_k^{(i)} − z_j) = g_jᵀ(z_k − z_j) + g_{j,i}(1 − 2 z_{k,i})):
    ``[K, *, 2]`` and ``[K, *, D, 2]``.  ``control`` maps the pairs' inputs ``[K, K − 1, …, 2]`` → ``[K, K − 1, …, 2]``
    (NN_ψ applied to the last dimension)."""
    K = z.shape[0]
    # lin[k, j] = g_jᵀ (z_k − z_j); flips[k, j, i] = g_jᵀ (z_k^{(i)} − z_j)
    gz = (g * z).sum(-1)  # [K(j), *]
    cross = torch.einsum("j...d,k...d->kj...", g, z)
    lin = cross - gz.unsqueeze(0)  # [K(k), K(j), *]
    flips = lin.unsqueeze(-1) + g.unsqueeze(0) * (1 - 2 * z).unsqueeze(1)  # [K, K, *, D]
    value = f.unsqueeze(0).expand_as(lin)  # f_j
    at_z = torch.stack([lin, value], -1)  # [K, K, *, 2]
    at_flips = torch.stack([flips, value.unsqueeze(-1).expand_as(flips)], -1)  # [K, K, *, D, 2]
    rows = torch.arange(K, device=z.device).unsqueeze(1)
    others = (rows + torch.arange(1, K, device=z.device)) % K  # [K, K − 1]: the j ≠ k of each k

    def evaluate(t):  # the pairs j ≠ k, NN_ψ, the mean over j
        return control(t[rows, others]).mean(1)

    return evaluate(at_z), evaluate(at_flips)


def rodeo_logit_gradient(a: torch.Tensor, z: torch.Tensor, f: torch.Tensor, g: torch.Tensor, control: Callable,
                         alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """RODEO (Shi, Zhou, Hwang, Titsias & Mackey, 2022; the reference code's ``discrete_stein_avg`` /
    ``discrete_stein_output_avg``, paper Eq. numbers not verified): RLOO with control variates from the Gibbs Stein
    operator (A h)(y) = (1/D) Σ_i q_i(1 − y_i) [h(y^{(i)}) − h(y)] applied to the leave-one-out control function
    H_k = (H⁰_k, H¹_k) of :func:`stein_control_values`: with s = z − σ(a), c_k = (A H⁰_k)(z_k), v_k = (A [H¹_k s])(z_k),
        ĝ_a = (1/K) Σ_k [(f_k − (1/(K−1)) Σ_{j≠k} (f_j + α c_j)) s(z_k) + β v_k].
    ``alpha``, ``beta`` ``[..., 1]`` broadcast against a.  Unbiased for every (α, β, ψ); α = β = 0 is RLOO."""
    theta = torch.sigmoid(a)
    s = z - theta  # [K, *, D]
    at_z, at_flips = stein_control_values(z, f, g, control)
    rate = theta * (1 - z) + (1 - theta) * z  # q_i(1 − z_i)
    c = (rate * (at_flips[..., 0] - at_z[..., 0:1])).mean(-1)  # (A H⁰_k)(z_k), [K, *]
    # (A [H¹ s])(z_k)_d = (1/D) Σ_i rate_i [H¹(z^{(i)}) s(z^{(i)})_d − H¹(z) s(z)_d],
    # with s(z^{(i)})_d = s_d + δ_id (1 − 2 z_d)
    h1_flips, h1_z = at_flips[..., 1], at_z[..., 1:2]  # [K, *, D], [K, *, 1]
    D = z.shape[-1]
    v = ((rate * h1_flips).sum(-1, keepdim=True) * s + rate * h1_flips * (1 - 2 * z)
         - rate.sum(-1, keepdim=True) * h1_z * s) / D
    baseline = leave_one_out(f + alpha[..., 0] * c)
    return ((f - baseline).unsqueeze(-1) * s + beta * v).mean(0)
