"""The relaxations for RBM priors: DVAE++'s §5 bound under every smoothing (estimators/smoothed_rbm.py:
``overlap_exp``, ``overlap_logistic``, ``overlap_power``, ``spike_exp`` on ``rbm_vae``) and ``gumbolt``.

Model: ``rbm_vae_tiny`` (7×7 pixels, 8 latent bits = 4 + 4, exact log Z and exact prior samples for the
negative phase), one factorial group or the hierarchical guide; the parameter point is seed 3, replicated
n times by ``harness.checks.draws`` (one vectorised pass); 3 data points sampled from it (seed 0); every
other draw follows the ``rng`` fixture (torch seed 0), so the outcomes are deterministic and the values
quoted were measured with these seeds.  Bias is against the exact gradient of the discrete ELBO (K = 1)
including the log Z term (enumeration), measured with ``stats.bias_sq`` (unbiased for ‖E ĝ − g*‖²).
"""
import math

import pytest
import torch

from estibench import estimators
from estibench.estimators.base import IncompatibleError
from estibench.estimators.smoothed_rbm import SmoothedRBM
from estibench.harness import iwae_bound
from estibench.harness.checks import sample_data
from estibench.harness.runner import build_model
from estibench.models.protocols import MULTILINEAR_ENERGY, RELAXED_BOLTZMANN, UNNORMALISED_PRIOR
from stats import bias_sq, directional_pairs, draws

SMOOTHINGS = ["spike_exp", "overlap_exp", "overlap_logistic", "overlap_power"]


def tiny(**options):
    return lambda seeds: build_model("rbm_vae_tiny", seeds=seeds, **options)


def at(beta, **options):
    return dict(beta_start=beta, beta_end=beta, **options)


# ----------------------------------------------------------------------------- registration and refusals

def test_one_name_per_smoothing_with_an_rbm_implementation():
    model = tiny()((0,))
    sbn = build_model("sbn_tiny", latent_bits=4)
    for name in SMOOTHINGS:
        on_rbm = estimators.get(name).bind(model)
        assert isinstance(on_rbm, SmoothedRBM) and on_rbm.unbiased is False
        assert on_rbm.needs == {UNNORMALISED_PRIOR, RELAXED_BOLTZMANN, MULTILINEAR_ENERGY}
        assert UNNORMALISED_PRIOR in on_rbm.handles and on_rbm.elbo == "joint"
        assert not isinstance(estimators.get(name).bind(sbn), SmoothedRBM)  # the layered form on directed priors
    est = estimators.get("gumbolt")
    assert est.temperature == 0.25 and est.unbiased is False and est.needs == {UNNORMALISED_PRIOR, RELAXED_BOLTZMANN}
    est = estimators.get("gumbolt", temperature=1.0, final_temperature=0.25)
    est.set_progress(0.5)
    assert est.temperature == pytest.approx(0.625)


def test_refusals_are_one_line():
    """The marginal bound (intractable p(ζ) for an RBM), the RBM-prior paper's −F(z) prior (not
    multilinear) for the DVAE++ bound, a directed model for gumbolt, and bad temperatures."""
    cases = [(estimators.get("overlap_exp", elbo="marginal"), tiny()((0,)), "intractable"),
             (estimators.get("overlap_power"), tiny(latent_bits=6, rbm_hidden=5)((0,)), "multilinear energy"),
             (estimators.get("gumbolt"), build_model("sbn_tiny", latent_bits=4), "Boltzmann-prior interface")]
    for est, model, words in cases:
        with pytest.raises(IncompatibleError, match=words) as err:
            est.check(model, 1)
        assert "\n" not in str(err.value)
    estimators.get("gumbolt").check(tiny(latent_bits=6, rbm_hidden=5)((0,)), 2)  # the relaxed −F(ζ) is fine
    for bad in ({"temperature": 0.0}, {"temperature": -1.0}, {"final_temperature": math.nan}):
        with pytest.raises(ValueError) as err:
            estimators.get("gumbolt", **bad)
        assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- bias against the exact gradient

BIAS_GRID = [("spike_exp", (1.0, 2.0, 4.0)), ("overlap_exp", (2.0, 4.0, 8.0)), ("overlap_logistic", (0.5, 1.0, 2.0)),
             ("overlap_power", (2.0, 8.0, 30.0))]


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("which", ["guide", "generative"])
@pytest.mark.parametrize("name,betas", BIAS_GRID, ids=[g[0] for g in BIAS_GRID])
def test_bias_falls_as_beta_grows(name, betas, which, groups, rng):
    """‖bias‖² of the φ- (guide) or θ-gradient (RBM and decoder; the negative phase from exact prior
    samples) at K = 1 against the exact gradient of the discrete ELBO − log Z falls strictly along the β
    grid, and by more than half over it; n = 4,000 draws per β.  Measured ‖bias‖² (‖g*‖² = 0.45 φ, 5.89 θ
    for one group; 0.59, 6.29 for two):
      one group,  φ: spike 0.049, 0.033, 0.015; exp 0.156, 0.071, 0.022; logistic 0.019, 0.0026, 0.0002;
                     power 0.146, 0.016, 0.0021
                  θ: spike 0.65, 0.45, 0.20; exp 0.027, 0.013, 0.005; logistic 30.4, 2.7, 0.18; power 0.023, 0.0027, 0.0001
      two groups, φ: spike 0.072, 0.052, 0.025; exp 0.171, 0.078, 0.023; logistic 0.46, 0.039, 0.0026;
                     power 0.161, 0.018, 0.0016
                  θ: spike 0.74, 0.50, 0.22; exp 0.029, 0.016, 0.0066; logistic 30.4, 2.6, 0.20; power 0.026, 0.0033, −0.0001
    (the logistic ζ leaves [0, 1], where the relaxed energy and decoder are far from their binary values)."""
    make = tiny(groups=groups)
    x = sample_data(make, 3, 0)
    b = [bias_sq(*draws(make, name, x, 1, 4000, which=which, **at(beta))) for beta in betas]
    assert b[0] > b[1] > b[2] and b[0] > 2 * b[2], b


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("which", ["guide", "generative"])
def test_gumbolt_bias_falls_as_the_temperature_falls(which, groups, rng):
    """GumBolt at τ = 1, 0.5, 0.25 (the paper's value): ‖bias‖² against the exact K = 1 gradient falls strictly
    and by more than half; n = 4,000.  Measured: one group φ 0.070, 0.013, 0.0012, θ 0.016, 0.0046, 0.0006;
    two groups φ 0.097, 0.017, 0.0010, θ 0.016, 0.0049, 0.0011 (Σ Var at τ = 0.25: 4.0–4.6)."""
    make = tiny(groups=groups)
    x = sample_data(make, 3, 0)
    b = [bias_sq(*draws(make, "gumbolt", x, 1, 4000, which=which, temperature=t)) for t in (1.0, 0.5, 0.25)]
    assert b[0] > b[1] > b[2] and b[0] > 2 * b[2], b


@pytest.mark.parametrize("name,options", [("overlap_power", at(30.0)), ("gumbolt", {"temperature": 0.25})])
def test_importance_weighted_forms_approach_the_iwae_gradient(name, options, rng):
    """K = 2 (the IWAE forms): at β = 30 (power) or τ = 0.25 (GumBolt) the mean φ-gradient points along the
    exact ∇_φ of the discrete IWAE bound (cosine > 0.95) with relative bias < 0.25; two groups, n = 4,000."""
    make = tiny(groups=2)
    d, exact = draws(make, name, sample_data(make, 3, 0), 2, 4000, which="guide", **options)
    relative = math.sqrt(max(bias_sq(d, exact), 0.0)) / float(exact.norm())
    cosine = float(torch.nn.functional.cosine_similarity(d.mean(0), exact, dim=0))
    assert relative < 0.25 and cosine > 0.95, (relative, cosine)


# ----------------------------------------------------------------------------- the bound's value

@pytest.mark.parametrize("name", SMOOTHINGS + ["gumbolt"])
@pytest.mark.parametrize("groups", [1, 2])
def test_objective_tends_to_the_discrete_elbo(name, groups, rng):
    """The logged objective (bound − exact log Z, K = 1) tends to the exact discrete ELBO − log Z as β grows
    (τ = 1/β for GumBolt): mean over 200 replicates × 60 points, β = 2, 8, 30, 100; |gap| < 0.05 nats
    (+ 3 s.e.) at β = 100 and larger at β = 2 than at β = 100."""
    n, copies = 200, 20
    model = tiny(groups=groups)((3,) * n)
    x = sample_data(tiny(groups=groups), 3, 0)
    xs = x.expand(n, *x.shape[1:]).repeat(1, copies, 1)
    exact = float(iwae_bound(tiny(groups=groups)((3,)), x, 1).detach().mean())
    gaps = []
    for beta in (2.0, 8.0, 30.0, 100.0):
        options = {"temperature": 1 / beta} if name == "gumbolt" else at(beta)
        with torch.no_grad():
            obj = estimators.get(name, **options).bind(model).surrogate(model, xs, 1).objective.double()
        gaps.append((abs(float(obj.mean()) - exact), float(obj.std()) / math.sqrt(n)))
    assert gaps[-1][0] < 0.05 + 3 * gaps[-1][1] and gaps[0][0] > gaps[-1][0], gaps


# ----------------------------------------------------------------------------- the spike's boundary terms

def directional(groups, K, seeds, copies, h, **options):
    """Per seed, (the estimator's derivative, the central difference of its bound) along one random
    direction of every parameter, common random numbers, float64, one replicate (``stats.directional_pairs``)."""
    model = tiny(groups=groups)((3,)).double()
    x = sample_data(tiny(groups=groups), 3, 0).double().repeat(1, copies, 1)
    with torch.no_grad():  # a strongly coupled prior (the initial W ~ U(±0.01) hides the jumps)
        gen = torch.Generator().manual_seed(2)
        for p in (model.rbm.W, model.rbm.a, model.rbm.b):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return directional_pairs(model, estimators.get("spike_exp", **options).bind(model), x, K, seeds, h)


SPIKE_CASES = [(2, 1), (1, 2)]


@pytest.mark.parametrize("groups,K", SPIKE_CASES, ids=[f"groups{g}-K{k}" for g, k in SPIKE_CASES])
def test_spike_gradient_is_unbiased_for_its_bound(groups, K, monkeypatch, rng):
    """The spike's hard z makes the RBM bound jump at the spike's edge (ν₁ᵀWμ₂ with two groups; every weight
    for K > 1): with the boundary terms the gradient is unbiased for the bound, without them it is not.
    Against central differences with common random numbers (h = 5e-3) along one random direction, β = 2,
    8 seeds × 10,000 × 3 points, float64: |mean difference| < 4 s.e. (two-sided false-alarm rate 6e-5); with
    the boundary terms removed it must exceed 4 s.e.  The RBM's W, a, b are drawn N(0, 1) (seed 2).
    Measured (estimator − FD ± s.e., derivative ≈ 4.0 and 3.9): two groups K = 1 −0.041 ± 0.053 (z = −0.8;
    without: −0.40, z = −7.6); one group K = 2 −0.11 ± 0.074 (z = −1.5; without: −1.91, z = −25)."""
    def z_score():
        d = directional(groups, K, 8, 10000, 5e-3, **at(2.0))
        diff = d[:, 0] - d[:, 1]
        return float(diff.mean() / (diff.std() / math.sqrt(len(diff))))

    assert abs(z_score()) < 4
    monkeypatch.setattr(SmoothedRBM, "jump_terms", staticmethod(lambda log_w, jumps: 0.0))
    assert abs(z_score()) > 4


# ----------------------------------------------------------------------------- GumBolt as PixelVAE++ trains it

def test_gumbolt_pd_anneals_the_kl_and_holds_the_guide_logits_in_log_q(rng):
    """``gumbolt_pd`` on rbm_vae_tiny (seed 3, 3 data points, torch seed 11 before each call so both estimators
    draw the same ρ): the KL weight rises linearly over ``kl_warmup``; with no annealing its reported value and its
    θ-gradient equal ``gumbolt``'s (the path derivative changes only φ's), and its φ-gradient is gumbolt's minus
    the gradient of −log q̃ at fixed ζ (checked by recomputing that term); at weight 0 the prior gets no gradient."""
    est = estimators.get("gumbolt_pd", kl_warmup=0.2)
    assert est.kl_weight == 0.0
    est.set_progress(0.1)
    assert est.kl_weight == pytest.approx(0.5)
    est.set_progress(0.5)
    assert est.kl_weight == 1.0
    with pytest.raises(IncompatibleError, match="kl_warmup"):
        estimators.get("gumbolt_pd", kl_warmup=1.5)
    model = tiny(groups=2)((3,))
    x = sample_data(tiny(groups=2), 3, 0)
    theta, phi = model.generative_parameters(), model.guide_parameters()

    def grads(name, **options):
        e = estimators.get(name, **options).bind(model)
        torch.manual_seed(11)
        out = e.surrogate(model, x, 1)
        g = torch.autograd.grad(out.loss, theta + phi, allow_unused=True)
        return out.objective, [torch.zeros_like(p) if t is None else t for p, t in zip(theta + phi, g)]

    v0, g0 = grads("gumbolt")
    v1, g1 = grads("gumbolt_pd", kl_warmup=0.0)
    assert torch.allclose(v0, v1)
    for a, b in zip(g0[:len(theta)], g1[:len(theta)]):
        assert torch.allclose(a, b, atol=1e-6)
    assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(g0[len(theta):], g1[len(theta):]))
    cold = estimators.get("gumbolt_pd", kl_warmup=0.5).bind(model)  # weight 0 before set_progress
    torch.manual_seed(11)
    loss = cold.surrogate(model, x, 1).loss
    rbm = list(model.rbm.parameters())
    assert all(g is None or torch.count_nonzero(g) == 0
               for g in torch.autograd.grad(loss, rbm, allow_unused=True))
