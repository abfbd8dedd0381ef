"""Vectorised gradient draws and the statistical tests used by the ground-truth tests."""
import math

import torch
from scipy.stats import norm

from estibench import estimators
from estibench import models
from estibench.harness import exact_gradient, gradient_draws

FAMILY_ALPHA = 1e-3  # false-alarm rate of one whole-vector test (Bonferroni over coordinates)


def draws(make_model, estimator_name, x, num_particles, n, which="guide", prepare=None, **options):
    """n independent estimates at one parameter point: the point is replicated n times (every
    replicate built from the same seed), so one vectorised pass gives n independent draws.
    ``prepare(estimator)``, if given, runs on both bound estimators (e.g. to set their own
    parameters identically in every replicate).  Returns (draws [n, D], exact gradient [D])."""
    single = make_model((3,))
    many = make_model((3,) * n)
    est_single = estimators.get(estimator_name, **options).bind(single)
    est_many = estimators.get(estimator_name, **options).bind(many)
    if prepare is not None:
        prepare(est_single)
        prepare(est_many)
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


@torch.no_grad()
def randomise_own(estimator, seed: int, scale: float = 0.5, shrink=None) -> None:
    """Move every floating parameter and buffer of ``estimator`` (its own: baselines, control
    variates, temperatures, running statistics) to a random point, the same in every replicate:
    t ← t + scale · s · ε, ε ~ N(0, 1) of shape t.shape[1:] (seeded by ``seed`` and the tensor's
    name), s the tensor's std over one replicate, or max(1, |t|) where that is 0.  ``shrink``
    maps a name to a function applied afterwards (e.g. to keep an MLP off saturation)."""
    gen = torch.Generator().manual_seed(int(seed))
    named = list(estimator.named_parameters()) + [(k, b) for k, b in estimator.named_buffers() if b is not None]
    for name, t in sorted(named, key=lambda kv: kv[0]):
        if not t.is_floating_point() or t.dim() == 0:
            continue
        one = t[0]
        s = float(one.std()) if one.numel() > 1 else 0.0
        eps = torch.randn(one.shape, generator=gen, dtype=torch.float64).to(t.dtype)
        spread = s if s > 1e-6 else torch.clamp(one.abs(), min=1.0)
        t.copy_((one + scale * spread * eps).expand_as(t).clone())
        if shrink and name in shrink:
            t.copy_(shrink[name](t))
