"""The DVAE smoothings and GumBolt's relaxation in the functional API ``estibench.grad`` (``spike_exp``,
``overlap_exp``, ``overlap_power``, ``overlap_logistic``, ``gumbolt``; ``estimators/functional/smoothing.py``).

One implementation: on the same draws (torch seeds fixed per test), the API with f = the registered bound's integrand
gives the registered estimator's gradient to rounding: K = 1 on a one-layer SBN (``sbn_and_data`` of test_grad; the
joint bound of DVAE++ Eq. 4 for every smoothing, the marginal one of Eq. 5 for the exponential and logistic mixtures)
and on ``rbm_vae_tiny`` with one factorial group (DVAE++ §5's bound; GumBolt's, with its −log Z term added outside f,
since its gradient needs the prior's samples).  A wrong β in the API fails the same comparison.

The API's relaxed samples have the paper's law: for each method at its default β (τ), n = 20,000 particles at
q = 0.3 (torch seed 5), a χ² test of binned counts against the CDF written out here from the papers (not from the
module), the spike's atom P(ζ = 0) = 1 − q one of the bins; in the zero-temperature
limit (β = 10⁴, τ = 10⁻⁴) a binomial test that P(ζ > ½) = q, and all but 0.5 % of ζ within 10⁻² of {0, 1}.  Family-wise
false-alarm rate ALPHA = 1e-3 per test function, Bonferroni over its p-values.
"""
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Bernoulli, Independent

import estibench
from estibench import estimators
from estibench.estimators.base import batch_loss, log_partition_term
from estibench.estimators.functional.smoothing import mixture_log_density
from estibench.estimators.grad import METHODS
from estibench.harness.checks import sample_data
from estibench.harness.runner import build_model
from estibench.models.protocols import bernoulli_log_mass, bernoulli_log_mass_two_sums
from test_grad import _model_gradients, _same, sbn_and_data

SMOOTHINGS = ["spike_exp", "overlap_exp", "overlap_power", "overlap_logistic"]
ALPHA = 1e-3


def _registered_and_api(model, x, name, registered_options, api_options, f_of, seed, extra=None):
    """(registered gradient, API gradient) on the same draws: the API's surrogate for f = ``f_of(logits)``, plus
    ``extra()`` (drawn after the API's draws, as the registered estimator draws it after its own)."""
    est = estimators.get(name, **registered_options).bind(model)
    torch.manual_seed(seed)
    registered = _model_gradients(model, est.surrogate(model, x, 1).loss)
    torch.manual_seed(seed)
    g = model.guide_layer(0, x) if hasattr(model, "guide_layer") else model.encoder_logits(0, x)
    out = estibench.grad(Independent(Bernoulli(logits=g), 1), f_of(g), name, particles=1, **api_options)
    surrogate = out.surrogate if extra is None else out.surrogate - extra().unsqueeze(-1)
    return registered, _model_gradients(model, batch_loss(surrogate))


def _sbn_f(model, x, name, elbo, beta):
    """The registered layered bound's integrand for one layer, K = 1 (``estimators/overlap_exp.py``): joint,
    log p(x | ζ) + c(μ; a) − c(μ; g), μ = σ(g) (−KL in closed form); marginal, log p(x | ζ) + Σ log p(ζ) − log q(ζ|x)
    with the mixture densities."""
    a = model.prior_layer(0)

    def f_of(g):
        def f(zeta):
            if elbo == "joint":
                mu = torch.sigmoid(g)
                return (model.log_likelihood(x, zeta) + bernoulli_log_mass_two_sums(a, mu)
                        - bernoulli_log_mass_two_sums(g, mu))
            return model.log_likelihood(x, zeta) + (mixture_log_density(name, a, zeta, beta)
                                                    - mixture_log_density(name, g, zeta, beta)).sum(-1)
        return f
    return f_of


@pytest.mark.parametrize("name, elbo", [(n, "joint") for n in SMOOTHINGS]
                         + [("overlap_exp", "marginal"), ("overlap_logistic", "marginal")])
def test_smoothings_equal_the_registered_estimator_on_a_one_layer_sbn(name, elbo):
    """β = 3 on both sides (not the default, so the option reaches the sampler); overlap_power's marginal bound is
    left out: the registered one evaluates its densities from the exact pair (log ζ, log(1 − ζ)), which f, given ζ,
    cannot rebuild in float32."""
    model, x = sbn_and_data()
    registered, api = _registered_and_api(model, x, name, dict(beta_start=3.0, beta_end=3.0, elbo=elbo),
                                          {"beta": 3.0}, _sbn_f(model, x, name, elbo, 3.0), seed=4)
    _same(registered, api)


def test_a_wrong_beta_fails_the_comparison():
    """The comparison can fail: the API at β = 3.3 against the registered estimator at β = 3."""
    model, x = sbn_and_data()
    registered, api = _registered_and_api(model, x, "overlap_exp", dict(beta_start=3.0, beta_end=3.0),
                                          {"beta": 3.3}, _sbn_f(model, x, "overlap_exp", "joint", 3.3), seed=4)
    with pytest.raises(AssertionError):
        _same(registered, api)


def rbm_and_data():
    make = lambda seeds: build_model("rbm_vae_tiny", seeds=seeds, groups=1)  # noqa: E731
    return make((0,)), sample_data(make, 3, 0)


@pytest.mark.parametrize("name", SMOOTHINGS + ["gumbolt"])
def test_smoothings_and_gumbolt_equal_the_registered_estimator_on_an_rbm_prior(name):
    """``rbm_vae_tiny``, one factorial group, K = 1.  Smoothings (``estimators/smoothed_rbm.py``): f(ζ) =
    log p(x | ζ) + H(q) + log p*(μ), β = 3; GumBolt (``estimators/gumbolt.py``): f(ζ) = log p(x | ζ) + log p*(ζ) −
    log q̃(ζ | x), τ = 0.4.  −log Z (exact value, negative phase from exact prior samples) outside f."""
    model, x = rbm_and_data()
    log_p = model.log_prior_unnormalised

    def f_of(g):
        if name == "gumbolt":
            return lambda zeta: model.log_likelihood(x, zeta) + log_p(zeta) - bernoulli_log_mass(g, zeta)
        mu = torch.sigmoid(g)
        return lambda zeta: model.log_likelihood(x, zeta) - bernoulli_log_mass(g, mu) + log_p(mu)

    if name == "gumbolt":
        options, api_options = dict(temperature=0.4), {"temperature": 0.4}
    else:
        options, api_options = dict(beta_start=3.0, beta_end=3.0), {"beta": 3.0}
    registered, api = _registered_and_api(model, x, name, options, api_options, f_of, seed=6,
                                          extra=lambda: log_partition_term(model))
    _same(registered, api)


def test_the_api_defaults_are_the_registered_estimators_final_values():
    for name in SMOOTHINGS:
        assert METHODS[name].options == {"beta": estimators.get(name).bind(sbn_and_data()[0]).beta_end}
        assert METHODS[name].relaxed and not METHODS[name].unbiased
    assert METHODS["gumbolt"].options == {"temperature": estimators.get("gumbolt").final}


# -- the relaxed samples' law ------------------------------------------------------------------------------------------
def _paper_cdf(name, q, beta):
    """F(t) = (1 − q) R(t|0) + q R(t|1), R from the papers (binary Concrete for gumbolt, β = 1/τ)."""
    e = math.exp(-beta)
    if name == "spike_exp":  # Rolfe: R(t|0) = 1 on [0, 1], R(t|1) = (e^{βt} − 1)/(e^β − 1)
        r = lambda t, z: (torch.expm1(beta * t) / math.expm1(beta)) if z else torch.ones_like(t)  # noqa: E731
    elif name == "overlap_exp":  # DVAE++ Eq. 3
        r = lambda t, z: ((torch.exp(beta * (t - 1)) - e) if z else -torch.expm1(-beta * t)) / (1 - e)  # noqa: E731
    elif name == "overlap_power":  # DVAE#: R(t|0) = t^{1/β}, r(t|1) = r(1 − t|0)
        r = lambda t, z: (1 - (1 - t) ** (1 / beta)) if z else t ** (1 / beta)  # noqa: E731
    elif name == "overlap_logistic":  # DVAE++ App. B
        r = lambda t, z: torch.sigmoid(beta * (t - z))  # noqa: E731
    else:  # binary Concrete: P(ζ ≤ t) = σ(τ logit t − l)
        return lambda t: torch.sigmoid(torch.logit(t) / beta - math.log(q / (1 - q)))
    return lambda t: (1 - q) * r(t, 0) + q * r(t, 1)


def _api_samples(name, q, n, **options):
    logits = torch.full((1,), math.log(q / (1 - q)), dtype=torch.float64)
    out = estibench.grad(Independent(Bernoulli(logits=logits), 1), lambda z: z.sum(-1), name, particles=n, **options)
    return out.samples.reshape(-1)


UNIT = [1e-4, 0.01, 0.05] + [i / 10 for i in range(1, 10)] + [0.95, 0.99, 1 - 1e-4]
EDGES = {"spike_exp": [0.0] + UNIT, "overlap_logistic": [-0.5, -0.2, -0.1] + [i / 10 for i in range(0, 11)]
         + [1.1, 1.2, 1.5]}


def _merged(observed, expected, least=20.0):
    """Adjacent bins merged until each expects ≥ ``least`` counts (the χ² approximation's condition)."""
    obs, exp, o, e = [], [], 0.0, 0.0
    for oi, ei in zip(observed.tolist(), expected.tolist()):
        o, e = o + oi, e + ei
        if e >= least:
            obs, exp, o, e = obs + [o], exp + [e], 0.0, 0.0
    obs[-1], exp[-1] = obs[-1] + o, exp[-1] + e
    return np.array(obs), np.array(exp)


def test_the_relaxed_samples_have_the_papers_distribution():
    """A χ² test of the counts in bins (e_{j−1}, e_j] against n·(F(e_j) − F(e_{j−1})), F the paper's CDF, edges
    fixed and merged until each expects ≥ 20 (for the spike the first bin (−∞, 0] is its atom, of mass 1 − q).  A KS
    test would not do: at β = 40 in float64 about 40 % of the power function's z = 1 draws round to ζ = 1 (the
    registered estimator's densities use the exact log pair), ties a KS statistic counts as a jump."""
    q, n = 0.3, 20000
    names = SMOOTHINGS + ["gumbolt"]
    torch.manual_seed(5)
    p_values = {}
    for name in names:
        zeta = _api_samples(name, q, n)
        beta = 1 / METHODS[name].options["temperature"] if name == "gumbolt" else METHODS[name].options["beta"]
        edges = torch.tensor(EDGES.get(name, UNIT), dtype=torch.float64)
        observed = torch.bincount(torch.bucketize(zeta, edges), minlength=len(edges) + 1).double()
        F = torch.cat([torch.zeros(1), _paper_cdf(name, q, beta)(edges), torch.ones(1)])
        observed, expected = _merged(observed, n * (F[1:] - F[:-1]))
        p_values[name] = stats.chisquare(observed, expected * n / expected.sum()).pvalue
    assert min(p_values.values()) > ALPHA / len(p_values), p_values


def test_the_zero_temperature_limit_is_the_bernoulli():
    q, n = 0.3, 20000
    torch.manual_seed(7)
    p_values = []
    for name in SMOOTHINGS + ["gumbolt"]:
        option = {"temperature": 1e-4} if name == "gumbolt" else {"beta": 1e4}
        zeta = _api_samples(name, q, n, **option)
        near = torch.minimum(zeta.abs(), (zeta - 1).abs()) < 1e-2  # power: P(far) ≈ log(100)/β = 5e-4
        assert float(near.double().mean()) > 0.995, name
        p_values.append(stats.binomtest(int((zeta > 0.5).sum()), n, q).pvalue)
    assert min(p_values) > ALPHA / len(p_values), p_values


def test_bad_options_are_refused_with_one_line():
    q = Independent(Bernoulli(logits=torch.zeros(2, 3)), 1)
    for name, options in [("overlap_exp", {"beta": 0.0}), ("spike_exp", {"beta": float("inf")}),
                          ("gumbolt", {"temperature": -1.0}), ("overlap_power", {"temperature": 1.0})]:
        with pytest.raises(ValueError) as info:
            estibench.grad(q, lambda z: z.sum(-1), name, **options)
        assert "\n" not in str(info.value) and name in str(info.value)
