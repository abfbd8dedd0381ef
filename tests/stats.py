"""Vectorised gradient draws and the statistical tests used by the ground-truth tests.

The statistics live once, in the harness (``harness/checks.py``, also behind ``estibench check``)."""
import torch

from estibench import models
from estibench.harness.checks import FAMILY_ALPHA, bias_sq, draws, unbiased_test, z_scores  # noqa: F401


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


def directional_pairs(model, estimator, x, num_particles: int, seeds: int, h: float) -> torch.Tensor:
    """Per seed, (the estimator's derivative, the central finite difference of the objective it reports)
    along one random direction v of every model parameter (v ~ N(0, 1), generator seed 1), with common
    random numbers (torch seed = the seed index before every evaluation); ``[seeds, 2]`` float64.  For a
    bound-estimator pair whose gradient is unbiased for its own bound, the two columns agree in mean."""
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    out = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        grads = torch.autograd.grad(estimator.surrogate(model, x, num_particles).loss, params)
        analytic = -sum(float((g * u).sum()) for g, u in zip(grads, v))
        values = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for p, u in zip(params, v):
                    p.add_(sign * h * u)
                torch.manual_seed(seed)
                values.append(float(estimator.surrogate(model, x, num_particles).objective.sum()))
                for p, u in zip(params, v):
                    p.sub_(sign * h * u)
        out.append((analytic, (values[0] - values[1]) / (2 * h)))
    return torch.tensor(out, dtype=torch.float64)
