"""Gradient samples at frozen parameters and exact gradients, one sign convention.

Both return the gradient of the objective being *maximised*, averaged over the B data points
of each replicate, flattened over the chosen parameter group in ``parameters()`` order (all
replicates, replicate-major within each parameter tensor).
"""
from __future__ import annotations

import torch

from .exact import exact_objective_gradient


def _group_indices(model, which: str):
    wanted = {id(p) for p in model.parameter_group(which)}
    return [i for i, p in enumerate(model.parameters()) if id(p) in wanted]


def gradient_draws(model, estimator, x, num_particles, num_samples, which="guide") -> torch.Tensor:
    """``[num_samples, R, D_r]``: independent estimates per replicate (ascent direction)."""
    estimator.check(model, num_particles)
    index = _group_indices(model, which)
    R = model.replicates
    out = []
    for _ in range(int(num_samples)):
        grads, _, _ = estimator.gradients(model, x, num_particles, with_own=False)
        out.append(torch.cat([grads[i].detach().reshape(R, -1) for i in index], dim=1).neg())
    return torch.stack(out)


def gradient_samples(model, estimator, x, num_particles, num_samples, which="guide") -> torch.Tensor:
    """``[num_samples, D]`` independent gradient estimates of the ``which`` group ("guide" or
    "generative") at frozen parameters."""
    index = _group_indices(model, which)
    params = list(model.parameters())
    draws = []
    estimator.check(model, num_particles)
    for _ in range(int(num_samples)):
        grads, _, _ = estimator.gradients(model, x, num_particles, with_own=False)
        draws.append(torch.cat([grads[i].detach().reshape(-1) for i in index]).neg())
    del params
    return torch.stack(draws)


def exact_gradient(model, estimator, x, num_particles, which="guide") -> torch.Tensor:
    """``[D]``: the exact gradient, by enumeration, of the objective the estimator targets for
    the ``which`` group (``estimator.guide_target`` / ``estimator.generative_target``)."""
    estimator.check(model, num_particles)
    target = estimator.guide_target if which == "guide" else estimator.generative_target
    return exact_objective_gradient(model, x, target, num_particles, which)
