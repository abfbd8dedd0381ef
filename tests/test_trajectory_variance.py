"""The trajectory gradient variance (``grad_logvar_ema``, REBAR's convention) is debiased.

Zero-started EMAs of g and g² with decay 0.999 are biased low by the factor 1 − 0.999ⁿ (0.22 at
n = 250) plus a term in the mean², so early evaluations under-report the variance.  Checked here
on a known i.i.d. stream: g_t ~ N(μ, diag σ²) with μ_d = 3 and σ_d ∈ [0.5, 2] over D = 4,000
coordinates and R = 2 replicates, torch seed 0.  The debiased estimate of mean_d σ_d² is a weighted
sample variance averaged over 4,000 coordinates: its relative standard error is below 0.3 % and
its small-sample bias below 1 % at n ≥ 250, so a 3 % tolerance has a negligible false-alarm rate.
"""
import math

import pytest
import torch

from estibench.harness.metrics import TrajectoryVariance
from estibench.studies.sbn.task import SBNTask


@pytest.mark.parametrize("n", [250, 1000, 3000])
def test_debiased_trajectory_variance_matches_the_stream(n):
    R, D = 2, 4000
    gen = torch.Generator().manual_seed(0)
    sigma = 0.5 + 1.5 * torch.rand(R, D, generator=gen, dtype=torch.float64)
    mu = torch.full((R, D), 3.0, dtype=torch.float64)
    tracker = TrajectoryVariance(0.999)
    stream = []
    for _ in range(n):
        g = mu + sigma * torch.randn(R, D, generator=gen, dtype=torch.float64)
        stream.append(g)
        tracker.update([g[:, :1000], g[:, 1000:].reshape(R, 60, 50)])  # several tensors, any shapes
    true = (sigma ** 2).mean(-1)
    got = tracker.variance().mean(-1)
    assert torch.allclose(got, true, rtol=0.03), (got, true)
    assert torch.allclose(tracker.log_variance(), got.log())
    sample = torch.stack(stream).var(0).mean(-1)  # the plain sample variance of the same stream
    assert torch.allclose(got, sample, rtol=0.03 if n > 1000 else 0.01)
    # the zero-started EMA without the correction is far off (what the SBN study reported before)
    w = 1 - 0.999 ** n
    raw = torch.cat([(s - m * m).reshape(R, -1) for m, s in zip(tracker.mean, tracker.square)], 1).mean(-1)
    assert torch.allclose(raw, w * got + w * (1 - w) * torch.cat([(m / w).reshape(R, -1) ** 2 for m in tracker.mean],
                                                                  1).mean(-1), rtol=1e-6)
    if n <= 1000:
        assert not torch.allclose(raw, true, rtol=0.05)


def test_the_sbn_study_uses_the_debiased_tracker():
    assert "TrajectoryVariance" in SBNTask.__init__.__code__.co_names
    with pytest.raises(ValueError):
        TrajectoryVariance(1.0)
    with pytest.raises(ValueError):
        TrajectoryVariance(0.9).variance()
    assert math.isclose(TrajectoryVariance().decay, 0.999)
