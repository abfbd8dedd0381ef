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


def _draw(model, estimator, x, num_particles, index):
    grads, _, _ = estimator.gradients(model, x, num_particles, with_own=False)
    return [grads[i].detach() for i in index]


def gradient_draws(model, estimator, x, num_particles, num_samples, which="guide") -> torch.Tensor:
    """``[num_samples, R, D_r]``: independent estimates per replicate (ascent direction)."""
    estimator.check(model, num_particles)
    index = _group_indices(model, which)
    R = model.replicates
    return torch.stack([torch.cat([g.reshape(R, -1) for g in _draw(model, estimator, x, num_particles, index)], 1)
                        for _ in range(int(num_samples))]).neg()


def gradient_samples(model, estimator, x, num_particles, num_samples, which="guide") -> torch.Tensor:
    """``[num_samples, D]`` independent gradient estimates of the ``which`` group ("guide" or
    "generative") at frozen parameters, in the same layout as :func:`exact_gradient`."""
    estimator.check(model, num_particles)
    index = _group_indices(model, which)
    return torch.stack([torch.cat([g.reshape(-1) for g in _draw(model, estimator, x, num_particles, index)])
                        for _ in range(int(num_samples))]).neg()


def exact_gradient(model, estimator, x, num_particles, which="guide") -> torch.Tensor:
    """``[D]``: the exact gradient, by enumeration, of the objective the estimator targets for
    the ``which`` group (``estimator.guide_target`` / ``estimator.generative_target``)."""
    estimator.check(model, num_particles)
    target = estimator.guide_target if which == "guide" else estimator.generative_target
    return exact_objective_gradient(model, x, target, num_particles, which)
