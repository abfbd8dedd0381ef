"""Vectorised gradient draws and the statistical tests used by the ground-truth tests."""
import math

import torch
from scipy.stats import norm

import estimators
import models
from harness import exact_gradient, gradient_draws

FAMILY_ALPHA = 1e-3  # false-alarm rate of one whole-vector test (Bonferroni over coordinates)


def draws(make_model, estimator_name, x, num_particles, n, which="guide", **options):
    """n independent estimates at one parameter point: the point is replicated n times (every
    replicate built from the same seed), so one vectorised pass gives n independent draws.
    Returns (draws [n, D], exact gradient [D])."""
    single = make_model((3,))
    many = make_model((3,) * n)
    est_single = estimators.get(estimator_name, **options).bind(single)
    est_many = estimators.get(estimator_name, **options).bind(many)
    xs = x.expand(n, *x.shape[1:]).contiguous()
    d = gradient_draws(many, est_many, xs, num_particles, 1, which=which)[0]
    return d, exact_gradient(single, est_single, x, num_particles, which=which)


def z_scores(d, exact):
    se = d.std(0) / math.sqrt(d.shape[0])
    return (d.mean(0) - exact) / se, se


def unbiased_test(d, exact, alpha=FAMILY_ALPHA):
    """True when no coordinate's mean departs from the exact value by more than the Bonferroni
    threshold Φ⁻¹(1 − α/(2D)) standard errors; zero-variance coordinates must match exactly."""
    z, se = z_scores(d, exact)
    live = se > 1e-7 * (1 + exact.abs())
    threshold = norm.ppf(1 - alpha / (2 * d.shape[1]))
    dead_ok = torch.allclose(d.mean(0)[~live], exact[~live], atol=1e-5, rtol=1e-4)
    return bool((z[live].abs() < threshold).all() and dead_ok), float(z[live].abs().max()), threshold


def bias_sq(d, exact):
    """Unbiased estimate of ‖E ĝ − g*‖² from n draws."""
    n = d.shape[0]
    return float(((d.mean(0) - exact) ** 2).sum() - d.var(0).sum() / n)


def gmm(seeds):
    return models.get("gmm", seeds=seeds)


def gmm_data(n=4, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return models.get("gmm").true_model().sample(n)[1]
