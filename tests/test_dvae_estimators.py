"""The smoothing estimators of DVAE / DVAE++ / DVAE# (spike_exp, overlap_exp, overlap_logistic,
overlap_power) on the enumerable sigmoid belief network.

Model: ``sbn_tiny`` (7×7 = 49 pixels, ``train_mean`` = 0.3 passed so no dataset is read) with 4
latent bits per layer, ``linear1`` (16 states) and ``linear2`` (two layers, 256 states); the
parameter point is seed 3 (``tests/stats.draws`` replicates it n times, one vectorised pass) and
the data are 3 points drawn from that model with torch seed 0.  Every random draw follows the
``rng`` fixture (torch seed 0) or an explicit seed, so the outcomes are deterministic; the measured
values quoted in the docstrings come from these seeds.  Bias is measured against the exact
discrete gradient ∇_φ ELBO (``harness.exact_gradient``, K = 1) with ``stats.bias_sq`` (an unbiased
estimate of ‖E ĝ − g*‖²).

The pathwise gradient's variance grows exponentially with β for the spike (∂ζ/∂l ~ e^β/β at the
spike's edge) and the overlapping exponentials / logistics (∂ζ/∂l ~ e^{β/2}/β at ζ ≈ ½): measured
Σ_d Var on linear1 at β = 30 is 1.7e4 for overlap_exp and overlap_logistic (n = 2000), against 18.5
for overlap_power, so the β grids below stop at 4–8 for those and reach 30 for the power function.
"""
import copy
import math

import pytest
import torch

from estibench import estimators
from estibench import models
from estibench.estimators.base import IncompatibleError
from estibench.harness import iwae_bound
from estibench.estimators.spike_exp import SpikeExp
from estibench.models.protocols import LAYERED_BERNOULLI
from stats import bias_sq, directional_pairs, draws
from tiny_models import TinyBernoulli

BITS = 4
NAMES = ["spike_exp", "overlap_exp", "overlap_logistic", "overlap_power"]
OVERLAPPING = NAMES[1:]


def sbn(arch):
    def make(seeds):
        return models.get("sbn_tiny", seeds=seeds, latent_bits=BITS, arch=arch, train_mean=torch.full((49,), 0.3))
    return make


def sbn_data(arch, n=3, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return sbn(arch)((3,)).sample(n)[1]


def at(beta, **options):
    return dict(beta_start=beta, beta_end=beta, **options)


# ----------------------------------------------------------------------------- contract and options

def test_registered_with_the_declared_contract_and_options():
    defaults = {"spike_exp": (5.0, "joint"), "overlap_exp": (12.0, "joint"),
                "overlap_logistic": (12.0, "joint"), "overlap_power": (40.0, "marginal")}
    for name in NAMES:
        est = estimators.get(name).bind(sbn("linear1")((0,)))  # the layered implementation (RBM priors: test_rbm_smoothed.py)
        assert est.latent_types == frozenset({"bernoulli"}) and est.needs == frozenset({LAYERED_BERNOULLI})
        assert est.guide_target == "iwae" and est.unbiased is False and est.min_particles == 1
        assert (est.beta, est.elbo) == defaults[name] and est.beta_start == est.beta_end == defaults[name][0]
        est = estimators.get(name, beta_start=5.0, beta_end=15.0, elbo="marginal").bind(sbn("linear1")((0,)))
        for fraction, beta in ((0.0, 5.0), (0.5, 10.0), (1.0, 15.0)):
            est.set_progress(fraction)
            assert est.beta == pytest.approx(beta)
        for bad in ({"beta_start": 0.0}, {"beta_end": -1.0}, {"beta_start": math.inf}, {"elbo": "tight"}):
            with pytest.raises(ValueError) as err:  # IncompatibleError, or the registry's option check (inf)
                estimators.get(name, **bad)
            assert "\n" not in str(err.value)
        with pytest.raises(IncompatibleError, match="does not support categorical"):
            estimators.get(name).check(models.get("gmm"), 1)
        with pytest.raises(IncompatibleError, match="guide_layer"):
            estimators.get(name).check(TinyBernoulli(), 1)


# replicate independence: tests/test_contracts.py test_replicates_do_not_interact (every estimator × model)


# ----------------------------------------------------------------------------- (a), (b): bias against the discrete gradient

BIAS_GRID = [  # (name, arch, betas)
    ("spike_exp", "linear1", (1.0, 2.0, 4.0)), ("spike_exp", "linear2", (1.0, 2.0, 4.0)),
    ("overlap_exp", "linear1", (2.0, 4.0, 8.0)), ("overlap_exp", "linear2", (2.0, 4.0, 8.0)),
    ("overlap_logistic", "linear1", (0.5, 1.0, 2.0)), ("overlap_logistic", "linear2", (1.0, 2.0, 4.0)),
    ("overlap_power", "linear1", (2.0, 8.0, 30.0)), ("overlap_power", "linear2", (2.0, 8.0, 30.0)),
]


@pytest.mark.parametrize("name,arch,betas", BIAS_GRID, ids=[f"{g[0]}-{g[1]}" for g in BIAS_GRID])
def test_bias_falls_as_beta_grows(name, arch, betas, rng):
    """‖bias‖² of the φ-gradient (K = 1, default elbo) against the exact discrete ∇_φ ELBO falls strictly
    along the β grid, and by more than half over it; seed 0, n = 4000 draws per β.  Measured ‖bias‖²
    (‖g*‖² = 1.59 linear1, 2.52 linear2; Σ_d Var at the largest β in brackets):
    spike_exp        β = 1, 2, 4:  linear1 0.19, 0.13, 0.057 (10);    linear2 0.39, 0.27, 0.12 (10)
    overlap_exp      β = 2, 4, 8:  linear1 0.67, 0.31, 0.080 (2.4);   linear2 0.96, 0.43, 0.15 (5.7)
    overlap_logistic linear1 β = ½, 1, 2: 0.028, 0.0074, 0.0005 (0.8); linear2 β = 1, 2, 4: 0.19, 0.026, 0.0022 (1.2)
    overlap_power    β = 2, 8, 30: linear1 0.73, 0.075, 0.0048 (19);  linear2 1.21, 0.14, 0.042 (26)
    (The logistic smoothing is symmetric about z, so on this nearly linear decoder its bias is
    second order in 1/β and already small at β = 2.)"""
    x = sbn_data(arch)
    b = [bias_sq(*draws(sbn(arch), name, x, 1, 4000, **at(beta))) for beta in betas]
    assert b[0] > b[1] > b[2] and b[0] > 2 * b[2], b


PUBLISHED_BETA_BIAS = [("spike_exp", 5.0, 0.2), ("overlap_exp", 12.0, 0.2), ("overlap_logistic", 12.0, 0.1),
                  ("overlap_power", 40.0, 0.1)]


@pytest.mark.parametrize("name,beta,threshold", PUBLISHED_BETA_BIAS, ids=[r[0] for r in PUBLISHED_BETA_BIAS])
def test_close_to_the_discrete_gradient_at_the_reference_beta(name, beta, threshold, rng):
    """At the reference β (docs/conventions.md) the relative bias ‖E ĝ − g*‖ / ‖g*‖ is below the stated
    threshold and the mean estimate points along g* (cosine > 0.99): linear1, K = 1, seed 0, n = 4000.
    Measured relative bias / cosine / Σ_d Var: spike_exp (β = 5) 0.125 / 0.9965 / 22, overlap_exp
    (β = 12) 0.136 / 0.9990 / 11.5, overlap_logistic (β = 12) below the noise (bias² estimate < 0) /
    0.9993 / 11.7, overlap_power (β = 40) 0.009 / 0.9983 / 25."""
    d, exact = draws(sbn("linear1"), name, sbn_data("linear1"), 1, 4000, **at(beta))
    relative = math.sqrt(max(bias_sq(d, exact), 0.0)) / float(exact.norm())
    cosine = float(torch.nn.functional.cosine_similarity(d.mean(0), exact, dim=0))
    assert relative < threshold and cosine > 0.99, (relative, cosine)


# ----------------------------------------------------------------------------- (c) the bound's value

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("arch", ["linear1", "linear2"])
def test_objective_tends_to_the_discrete_elbo(name, arch, rng):
    """The smoothed bound's value (K = 1, default elbo) tends to the exact discrete ELBO as β grows:
    mean over 200 replicates × 60 data points (the 3 points repeated 20 times), seed 0, β = 2, 8, 30,
    100.  |gap| may not rise by more than 3 s.e. from one β to the next and is below 0.05 nats at
    β = 100 (and above 0.1 at β = 2).  Measured bound − ELBO at β = 2, 8, 30, 100 (s.e. ≈ 0.01):
    linear1 spike −0.145, −0.017, −0.004, −0.012; overlap_exp +0.351, +0.197, +0.059, +0.008;
    overlap_logistic −1.52, −0.096, −0.014, −0.012; overlap_power +0.326, +0.119, +0.033, −0.004;
    linear2 spike +0.593, +0.251, +0.083, +0.019; overlap_exp +0.532, +0.271, +0.096, +0.023;
    overlap_logistic −1.76, −0.119, +0.004, −0.004; overlap_power +0.630, +0.233, +0.084, +0.022
    (about 1/β; the smoothed bound may exceed the discrete ELBO: it bounds the smoothed model's evidence)."""
    n, copies = 200, 20
    model = sbn(arch)((3,) * n)
    x = sbn_data(arch)
    xs = x.expand(n, *x.shape[1:]).repeat(1, copies, 1)
    exact = float(iwae_bound(sbn(arch)((3,)), x, 1).detach().mean())
    gaps = []
    for beta in (2.0, 8.0, 30.0, 100.0):
        with torch.no_grad():
            obj = estimators.get(name, **at(beta)).surrogate(model, xs, 1).objective.double()
        gaps.append((abs(float(obj.mean()) - exact), float(obj.std()) / math.sqrt(n)))
    for (g0, s0), (g1, s1) in zip(gaps, gaps[1:]):
        assert g1 < g0 + 3 * math.hypot(s0, s1), gaps
    assert gaps[-1][0] < 0.05 + 3 * gaps[-1][1] and gaps[0][0] > 0.1, gaps


# ----------------------------------------------------------------------------- (d) joint vs marginal

@pytest.mark.parametrize("name", OVERLAPPING)
@pytest.mark.parametrize("arch", ["linear1", "linear2"])
def test_marginal_bound_is_tighter_than_the_joint_one(name, arch, rng):
    """DVAE++ App. D: E[marginal bound] ≥ E[joint bound] at the same parameters.  Paired draws (the
    same seed, hence the same ζ), K = 1 and 2, β = 2, n = 2000 replicates: the mean difference
    marginal − joint exceeds 3 s.e.  Measured (gap ± s.e., K = 1 / K = 2): linear1 overlap_exp
    0.021 ± 0.002 / 0.023 ± 0.0004, overlap_logistic 0.022 ± 0.002 / 0.023 ± 0.0004, overlap_power
    0.023 ± 0.002 / 0.023 ± 0.0004; linear2 0.142 ± 0.003 / 0.139 ± 0.001, 0.384 ± 0.005 / 0.353 ±
    0.003, 0.151 ± 0.003 / 0.148 ± 0.001.  (For K > 1 too: the marginal weight is the joint weight's
    conditional mean given ζ, and the Rao-Blackwellised joint weights lie below the joint ones.)"""
    n = 2000
    model = sbn(arch)((3,) * n)
    x = sbn_data(arch)
    xs = x.expand(n, *x.shape[1:]).contiguous()
    for K in (1, 2):
        values = {}
        for elbo in ("joint", "marginal"):
            torch.manual_seed(K)
            with torch.no_grad():
                values[elbo] = estimators.get(name, **at(2.0, elbo=elbo)).surrogate(model, xs, K).objective
        d = (values["marginal"] - values["joint"]).double()
        assert float(d.mean()) > 3 * float(d.std()) / math.sqrt(n), (K, float(d.mean()), float(d.std()))


# ----------------------------------------------------------------------------- (e) float32 at β = 40

@pytest.mark.parametrize("name", NAMES)
def test_finite_in_float32_at_beta_40(name, rng):
    """No NaN/inf in the objective or any gradient at β = 40 in float32, both bounds, K = 1 and 3,
    linear1 and linear2, at the seed-0 point and with every parameter scaled by 30 (logits of
    hundreds, so q rounds to 0 or 1 and ζ to {0, 1}), 5 draws each."""
    for arch in ("linear1", "linear2"):
        for scale in (1.0, 30.0):
            model = sbn(arch)((0, 1))
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(scale)
            x = model.sample(20)[1]
            for elbo in ("joint", "marginal"):
                est = estimators.get(name, **at(40.0, elbo=elbo)).bind(model)
                for K in (1, 3):
                    for _ in range(5):
                        g, _, obj = est.gradients(model, x, K)
                        assert obj.dtype == torch.float32 and torch.isfinite(obj).all()
                        assert all(torch.isfinite(t).all() for t in g), (arch, scale, elbo, K)


# ----------------------------------------------------------------------------- unbiased for the smoothed bound

def directional(name, arch, K, seeds, copies, h, **options):
    """Per seed, (estimator's derivative, central finite difference of the bound) along one random
    direction v of all parameters, with common random numbers (same seed); float64, one replicate,
    the 3 data points repeated ``copies`` times (``stats.directional_pairs``)."""
    model = sbn(arch)((3,)).double()
    x = sbn_data(arch).double().repeat(1, copies, 1)
    return directional_pairs(model, estimators.get(name, **options).bind(model), x, K, seeds, h)


@pytest.mark.parametrize("elbo", ["joint", "marginal"])
@pytest.mark.parametrize("K", [1, 2])
def test_overlap_exp_gradient_is_the_derivative_of_its_bound(elbo, K, rng):
    """overlap_exp samples by the closed-form inverse CDF, so with common random numbers its
    gradient along v equals the central difference (h = 1e-3) of the bound it reports, draw by
    draw (linear2, β = 4, seed 0, 300 × 3 points): relative difference measured ≤ 2.5e-6 (joint and
    marginal, K = 1 and 2); asserted < 1e-3."""
    analytic, fd = directional("overlap_exp", "linear2", K, 1, 300, 1e-3, **at(4.0, elbo=elbo))[0]
    assert abs(analytic - fd) < 1e-3 * abs(fd), (float(analytic), float(fd))


SPIKE_CASES = [("linear2", 1), ("linear1", 2)]


@pytest.mark.parametrize("arch,K", SPIKE_CASES, ids=[f"{a}-K{k}" for a, k in SPIKE_CASES])
def test_spike_gradient_is_unbiased_for_its_bound(arch, K, monkeypatch, rng):
    """spike_exp's hard z = 1[ζ > 0] makes the bound jump where ρ crosses the spike's edge: with the
    boundary terms (spike_exp.py) the gradient is unbiased for the bound, without them it is not.
    Against central differences with common random numbers (h = 5e-3) along one random direction,
    β = 2, 8 seeds × 10,000 × 3 points, float64: |mean difference| < 4 s.e. (two-sided false-alarm
    rate 6e-5); the same test with the boundary terms removed must fail by > 4 s.e.  Measured
    (estimator − FD ± s.e., derivative ≈ 1.33 and −0.44): linear2 K = 1 −0.023 ± 0.015 (z = −1.5;
    without: +0.41, z = 27); linear1 K = 2 +0.004 ± 0.004 (z = 1.1; without: +0.12, z = 32)."""
    def z_score():
        d = directional("spike_exp", arch, K, 8, 10000, 5e-3, **at(2.0))
        diff = d[:, 0] - d[:, 1]
        return float(diff.mean() / (diff.std() / math.sqrt(len(diff))))

    assert abs(z_score()) < 4
    monkeypatch.setattr(SpikeExp, "jump_terms", staticmethod(lambda log_w, jumps: 0.0))
    assert abs(z_score()) > 4
