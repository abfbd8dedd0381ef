"""The estimators for Bernoulli latents (ARM, DisARM, NVIL, MuProp, straight-through, Gumbel-ST and
binary Concrete) against exact gradients on the enumerable sigmoid belief network.

Model: ``sbn_tiny`` (7×7 = 49 pixels; ``train_mean`` = 0.3 passed, so no dataset is read) with
4 latent bits per layer, ``linear1`` (16 states) and ``linear2`` (two layers, 256 states); the
parameter point is seed 3 (``tests/stats.draws`` replicates it n times, one vectorised pass) and
the data are 3 points drawn from that model with torch seed 0.  Statistical tests: the global
RNG is fixed by the ``rng`` fixture (seed 0); n draws per test, stated in each docstring; the
whole-vector false-alarm rate is FAMILY_ALPHA = 1e-3 (Bonferroni over the D = 200 (linear1) or
220 (linear2) guide coordinates: |mean − exact| < 4.56 / 4.58 standard errors).  The seeds being
fixed, the outcomes are deterministic; the rate says how often a correct estimator would fail
under a fresh seed.  Measured values quoted in the docstrings come from these seeds.
"""
import copy

import pytest
import torch

from estibench import estimators
from estibench import models
from estibench.estimators.base import IncompatibleError
from estibench.harness import exact_gradient, gradient_draws
from estibench.models.protocols import LAYERED_BERNOULLI
from stats import bias_sq, draws, unbiased_test
from tiny_models import TinyBernoulli

BITS = 4
UNBIASED = ["arm", "disarm", "nvil", "muprop"]
HARD_FORWARD = ["straight_through", "gumbel_st"]
NEW = UNBIASED + HARD_FORWARD


def sbn(arch):
    def make(seeds):
        return models.get("sbn_tiny", seeds=seeds, latent_bits=BITS, arch=arch, train_mean=torch.full((49,), 0.3))
    return make


def sbn_data(arch, n=3, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return sbn(arch)((3,)).sample(n)[1]


def test_registered_with_the_declared_contract():
    for name in NEW:
        est = estimators.get(name)
        assert est.latent_types == frozenset({"bernoulli"}) and est.needs == frozenset({LAYERED_BERNOULLI})
        assert est.guide_target == "iwae" and est.unbiased == (name in UNBIASED)
    assert estimators.get("nvil").own_lr_multiplier == estimators.get("muprop").own_lr_multiplier == 10
    assert {"categorical", "bernoulli"} <= estimators.get("concrete").latent_types


@pytest.mark.parametrize("name", NEW + ["concrete"])
def test_incompatible_models_refused_in_one_line(name):
    gmm = models.get("gmm")
    if name != "concrete":
        with pytest.raises(IncompatibleError, match="does not support categorical") as err:
            estimators.get(name).check(gmm, 1)
        assert "\n" not in str(err.value)
    with pytest.raises(IncompatibleError) as err:
        estimators.get(name).check(TinyBernoulli(), 1)  # Bernoulli, but no layered interface
    assert "guide_layer" in str(err.value) and "\n" not in str(err.value)
    estimators.get(name).check(sbn("linear2")((0,)), 1)


# φ-unbiasedness of every unbiased estimator on every enumerable fixture: tests/test_unbiased.py


@pytest.mark.parametrize("arch", ["linear1", "linear2"])
@pytest.mark.parametrize("name,K", [("reinforce", 1), ("reinforce", 3), ("vimco", 3)])
def test_score_function_estimators_unbiased_on_the_sbn(name, K, arch, rng):
    """REINFORCE and VIMCO (shared with the GMM) on the enumerable SBN, one and two layers: φ-gradient
    against ∇_φ ELBO_IS^K by enumeration, seed 0, n = 2000 draws, α = 1e-3 (rebar and relax are
    tested in tests/test_rebar_relax.py)."""
    d, exact = draws(sbn(arch), name, sbn_data(arch), K, 2000)
    ok, zmax, threshold = unbiased_test(d, exact)
    assert ok, f"{name} {arch} K={K}: max |z| = {zmax:.2f} ≥ {threshold:.2f}"


@pytest.mark.parametrize("name", NEW)
def test_theta_gradient_is_the_wake_theta_gradient(name, rng):
    """θ-gradient against ∇_θ ELBO_IS^2 on linear2 (ST and Gumbel-ST too: their z are hard, so their
    pathwise θ-gradient is the wake-θ one): seed 0, n = 2000 draws, α = 1e-3."""
    d, exact = draws(sbn("linear2"), name, sbn_data("linear2"), 2, 2000, which="generative")
    ok, zmax, threshold = unbiased_test(d, exact)
    assert ok, f"{name}: max |z| = {zmax:.2f} ≥ {threshold:.2f}"


@pytest.mark.parametrize("name,n", [("straight_through", 20000), ("gumbel_st", 2000), ("concrete", 2000)])
def test_biased_estimators_are_rejected_with_a_measured_bias(name, n, rng):
    """The same test rejects the biased ones at their default temperatures (Gumbel-ST τ = 1,
    Concrete τ = 3 at the start of training), linear1, K = 1, seed 0.  Measured: max |z| = 8.0
    (ST, n = 20,000), 14.3 (Gumbel-ST), 147 (Concrete); ‖bias‖² ≈ 0.003, 0.19, 0.90 against
    ‖g*‖² = 1.59: the straight-through bias is small on this linear model, hence its larger n."""
    d, exact = draws(sbn("linear1"), name, sbn_data("linear1"), 1, n)
    ok, zmax, threshold = unbiased_test(d, exact)
    assert not ok and zmax > 1.5 * threshold, f"{name}: max |z| = {zmax:.2f}"
    assert bias_sq(d, exact) > 1e-3 * float(exact.norm() ** 2)


@pytest.mark.parametrize("name", ["concrete", "gumbel_st"])
def test_relaxation_bias_falls_with_the_temperature(name, rng):
    """Bias² against the discrete ∇_φ ELBO (linear1, K = 1) at τ = 2, 1, 0.5, seed 0, n = 4000 each;
    the variance rises as τ falls.  Measured ‖bias‖²: Concrete 0.61, 0.21, 0.035; Gumbel-ST 0.53,
    0.18, 0.031 (‖g*‖² = 1.59); Σ Var: Concrete 0.71, 1.8, 3.7; Gumbel-ST 5.2, 5.9, 7.1.  (Below
    τ ≈ 0.2 neither bias is detectable at this n on this nearly linear model.)"""
    x = sbn_data("linear1")
    stats = []
    for tau in (2.0, 1.0, 0.5):
        d, exact = draws(sbn("linear1"), name, x, 1, 4000, initial_temperature=tau, final_temperature=tau)
        stats.append((bias_sq(d, exact), float(d.var(0).sum())))
    (b0, v0), (b1, v1), (b2, v2) = stats
    assert b0 > 2 * b1 > 4 * b2 > 0
    assert v0 < v1 < v2


@pytest.mark.parametrize("arch", ["linear1", "linear2"])
def test_disarm_variance_is_at_most_arms(arch, rng):
    """Same point, same uniforms (seed 0 for both), n = 2000, K = 1: DisARM is ARM's conditional
    mean given the antithetic pair, so Σ_d Var(ĝ_d) must not exceed ARM's.  Measured Σ Var:
    linear1 4.85 (DisARM) vs 6.54 (ARM); linear2 8.57 vs 10.8."""
    x = sbn_data(arch)
    variance = {}
    for name in ("arm", "disarm"):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            d, _ = draws(sbn(arch), name, x, 1, 2000)
        variance[name] = float(d.var(0).sum())
    assert variance["disarm"] < 0.9 * variance["arm"], variance


def warmed_up(name, arch, x, n, steps=20, **options):
    """n replicates of the seed-3 point whose running statistics (c, v) saw ``steps`` training calls."""
    model = sbn(arch)((3,) * n)
    est = estimators.get(name, **options).bind(model)
    xs = x.expand(n, *x.shape[1:]).contiguous()
    for _ in range(steps):
        est.gradients(model, xs, 1)
    return model, est, xs


MG = {"variant": "mnih_gregor"}


@pytest.mark.parametrize("arch", ["linear1", "linear2"])
def test_default_nvil_is_the_rebar_codes_and_exactly_unbiased_after_training_calls(arch, rng):
    """NVIL's default is the REBAR code's variant (signal ℓ − C_ψ(x): no running mean, no variance
    normalisation), so after 20 training calls its draws are unbiased for ∇_φ ELBO as they are, not
    only up to a scale (seed 0, n = 2000, α = 1e-3).  The Mnih–Gregor variant's draws are rescaled by
    its normaliser, so the same unscaled test rejects them: its mean is shrunk by max(1, √v) > 1."""
    x = sbn_data(arch)
    single = sbn(arch)((3,))
    exact = exact_gradient(single, estimators.get("nvil").bind(single), x, 1)
    model, est, xs = warmed_up("nvil", arch, x, 2000)
    assert est.variant == "rebar_code" and not est.normalise_variance and not est.running_mean
    ok, zmax, threshold = unbiased_test(gradient_draws(model, est, xs, 1, 1)[0], exact)
    assert ok, f"nvil {arch}: max |z| = {zmax:.2f} ≥ {threshold:.2f}"
    model, est, xs = warmed_up("nvil", arch, x, 2000, **MG)
    scale = est.baseline.corrected(est.baseline.square).sqrt().clamp_min(1.0)
    assert float(scale.min()) > 1.5
    d = gradient_draws(model, est, xs, 1, 1)[0]
    assert not unbiased_test(d, exact)[0]
    assert float(d.mean(0).norm()) < 0.8 * float(exact.norm())


@pytest.mark.parametrize("name,arch,options,inflate", [("nvil", "linear1", MG, 1.0), ("nvil", "linear2", MG, 1.0),
                                                       ("muprop", "linear2", {"normalise_variance": True}, 100.0)])
def test_variance_normalised_estimate_is_unbiased_up_to_its_scale(name, arch, options, inflate, rng):
    """After 20 training calls (c, v updated; φ, θ, ψ frozen) each replicate's draw times its own
    max(1, √v) is unbiased for ∇_φ ELBO (K = 1): seed 0, n = 2000, α = 1e-3.  Frozen-parameter
    draws (``with_own=False``) leave the running statistics untouched.  MuProp's residuals have
    v < 1 on this model (the normaliser stays 1), so its v is multiplied by 100 after the warm-up
    (any state independent of the draws' noise must do) to exercise its per-layer scaling: layer l's
    factor divides the gradient of layer l's encoder."""
    x = sbn_data(arch)
    model, est, xs = warmed_up(name, arch, x, 2000, **options)
    est.baseline.square.mul_(inflate)
    before = [b.clone() for b in est.buffers()]
    d = gradient_draws(model, est, xs, 1, 1)[0]
    assert all(torch.equal(a, b) for a, b in zip(before, est.buffers()))
    scale = est.baseline.corrected(est.baseline.square).sqrt().clamp_min(1.0)  # [n, signals]
    assert float(scale.min()) > 1.0, "the normalisation must be active"
    if scale.shape[1] == 1:
        per_coordinate = scale
    else:  # one signal per layer: layer l's factor goes with encoder l's coordinates
        sizes = [sum(p[0].numel() for p in enc.parameters()) for enc in model.encoders]
        per_coordinate = torch.cat([scale[:, l:l + 1].expand(-1, size) for l, size in enumerate(sizes)], 1)
    single = sbn(arch)((3,))
    exact = exact_gradient(single, estimators.get(name, **options).bind(single), x, 1)
    ok, zmax, threshold = unbiased_test(d * per_coordinate, exact)
    assert ok, f"{name} {arch}: max |z| = {zmax:.2f} ≥ {threshold:.2f}"


# replicate independence: tests/test_contracts.py test_replicates_do_not_interact (every estimator × model)
