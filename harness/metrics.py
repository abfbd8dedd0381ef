"""Metric functions shared by studies.  Each returns one value per replicate, ``[R]``.

Definitions (written into every report):
* ``grad_std_phi`` — RWS §4.3: (1/D_φ) Σ_d std(ĝ_d) over n estimates of the φ-gradient at
  frozen parameters (sample std, ddof = 1); ``grad_std_phi_code`` — the reference code's
  variant: population std, summed and divided by the sum of the φ tensors' leading sizes.
* ``exact_grad/*`` — N draws ĝ of the φ-gradient against the exact gradient g* of the
  estimator's target objective: ``variance`` = Σ_d Var(ĝ_d); ``bias_sq`` = ‖mean ĝ − g*‖² −
  variance/N (unbiased for ‖E ĝ − g*‖²; can come out slightly negative); ``mse`` = mean ‖ĝ − g*‖²;
  ``norm`` = ‖g*‖.
"""
from __future__ import annotations

from typing import Dict

import torch

from .exact import exact_objective_gradient
from .gradients import gradient_draws


def gradient_std(draws: torch.Tensor, leading_sizes: int) -> Dict[str, torch.Tensor]:
    """``draws`` ``[n, R, D]`` → paper and code normalisations of the mean gradient std."""
    D = draws.shape[-1]
    return {
        "grad_std_phi": draws.std(0, unbiased=True).sum(-1) / D,
        "grad_std_phi_code": draws.std(0, unbiased=False).sum(-1) / leading_sizes,
    }


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
