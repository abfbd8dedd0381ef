"""Specific checks of ARMS, double control variates and RODEO (estimators/arms.py, double_cv.py, rodeo.py).

The generic tests (test_unbiased.py, test_contracts.py, test_speed.py) cover them at their initial own
parameters; test_own_parameters.py covers only models these single-layer estimators refuse, so their
randomised-own-parameter check is here.  Fixture: ``sbn_tiny-linear1`` of harness/checks.py (4 bits, 3 points,
model seed 3).  Every statistical check states its seed, n and false-alarm rate; outcomes are deterministic.
"""
import math

import pytest
import torch
from scipy.stats import norm

from estibench import estimators
from estibench.estimators.arms import debias_factor, dirichlet_copula_logits
from estibench.estimators.base import batch_loss
from estibench.harness.checks import fixtures
from estibench.models.protocols import bernoulli_log_mass
from stats import draws, randomise_own, unbiased_test

FIXTURE = fixtures()["sbn_tiny-linear1"]


def _elbo_terms(model, x, z, a):
    log_p = model.log_likelihood(x, z) + model.log_prior([z])
    return log_p, (log_p - bernoulli_log_mass(a, z)).detach()


def _grads(model, loss):
    return torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)


def test_arms_with_two_particles_is_disarm():
    """ARMS at K = 2 is DisARM (Dong et al. 2020, in estimators/disarm.py's form) with f the ELBO integrand
    and one antithetic pair, written out here: from ARMS's uniforms u (torch seed 0), e = −log(1 − u), d_k = e_k/(e_0 + e_1), the pair's
    base uniform is w = d_1 where a < 0 and d_0 where a ≥ 0 (ARMS flips the copula there), b = 1[w < σ(a)],
    b̃ = 1[1 − w < σ(a)], ĝ_a = ½ (f(b) − f(b̃)) (−1)^b̃ 1[b ≠ b̃] σ(|a|); θ gets ½ Σ ∇_θ log p at b and b̃.
    Every model gradient agrees to float32 rounding."""
    model, x = FIXTURE.make((3, 4)), FIXTURE.data().expand(2, -1, -1)
    est = estimators.get("arms").bind(model)
    torch.manual_seed(0)
    arms = est.gradients(model, x, 2)[0]
    torch.manual_seed(0)
    a = model.guide_layer(0, x)
    u = torch.rand((2, *a.shape))
    e = -torch.log1p(-u)
    d = e / e.sum(0)
    w = torch.where(a.detach() < 0, d[1], d[0])
    b = (torch.log(w) - torch.log1p(-w) < a.detach()).float()
    b_anti = (torch.log1p(-w) - torch.log(w) < a.detach()).float()
    log_p, f = _elbo_terms(model, x, b, a)
    log_p_anti, f_anti = _elbo_terms(model, x, b_anti, a)
    g = 0.5 * (f - f_anti).unsqueeze(-1) * (1 - 2 * b_anti) * (b != b_anti).float() * torch.sigmoid(a.detach().abs())
    loss = batch_loss(0.5 * (log_p + log_p_anti) + (g * a).sum(-1))
    disarm = _grads(model, loss)
    assert bool((b != b_anti).any())
    for p, s, t in zip(model.parameters(), arms, disarm):
        assert torch.allclose(s, t, rtol=1e-5, atol=1e-6), (p.shape, float((s - t).abs().max()))


@pytest.mark.parametrize("K", [3, 5])
def test_arms_samples_have_bernoulli_marginals_and_the_copula_joint(K):
    """The K Dirichlet-copula samples at 9 logits in [−4, 4]: every marginal frequency (K × 9 cells) is σ(a)
    and every pair's frequency of (1, 1) (K(K−1)/2 × 9 cells) is the joint J(p) behind the debiasing factor
    (p(1 − p)/(p − J) = ``debias_factor``), below p² (antithetic).  n = 40,000 draws per logit, torch seed 0;
    binomial z-scores against Φ⁻¹(1 − α/2m), Bonferroni over the m cells, whole-test false-alarm rate α = 1e-3."""
    n, alpha = 40_000, 1e-3
    a = torch.linspace(-4, 4, 9, dtype=torch.float64).expand(1, n, 9)
    torch.manual_seed(0)
    z = (dirichlet_copula_logits(a, K) < a).double()  # [K, 1, n, 9]
    p = torch.sigmoid(a[0, 0])
    m = torch.minimum(p, 1 - p)
    joint = p - m + torch.clamp(2 * m ** (1 / (K - 1)) - 1, min=0) ** (K - 1)
    assert torch.allclose(debias_factor(a[0, 0], K), p * (1 - p) / (p - joint), rtol=1e-9)
    assert bool((joint < p ** 2).all())
    pairs = [(k, j) for k in range(K) for j in range(k + 1, K)]
    cells = K * 9 + len(pairs) * 9
    threshold = norm.ppf(1 - alpha / (2 * cells))
    marginal = z.mean((1, 2))  # [K, 9]
    z_marginal = (marginal - p) / torch.sqrt(p * (1 - p) / n)
    both = torch.stack([(z[k] * z[j]).mean((0, 1)) for k, j in pairs])  # [pairs, 9]
    z_joint = (both - joint) / torch.sqrt(joint * (1 - joint) / n).clamp_min(1e-12)
    live = joint > 0  # where J = 0 the pair is never (1, 1): exactly
    assert float(z_marginal.abs().max()) < threshold, float(z_marginal.abs().max())
    assert float(z_joint[:, live].abs().max()) < threshold, float(z_joint[:, live].abs().max())
    assert bool((both[:, ~live] == 0).all())


def _rloo_gradients(model, x, K):
    """RLOO for the ELBO integrand without the direct term, written out (uniforms as ``binary.hard_sample``)."""
    a = model.guide_layer(0, x)
    u = torch.rand((K, *a.shape))
    z = (torch.log(u) - torch.log1p(-u) < a.detach()).float()
    log_p, f = _elbo_terms(model, x, z, a)
    baseline = (f.sum(0) - f) / (K - 1)
    g = ((f - baseline).unsqueeze(-1) * (z - torch.sigmoid(a.detach()))).mean(0)
    return _grads(model, batch_loss(log_p.mean(0) + (g * a).sum(-1)))


@pytest.mark.parametrize("name", ["double_cv", "rodeo"])
def test_at_initial_own_parameters_it_is_rloo(name):
    """α = β = 0: the estimate is RLOO's, written out (same uniforms, torch seed 0, K = 3), to rounding."""
    model, x = FIXTURE.make((3,)), FIXTURE.data()
    est = estimators.get(name).bind(model)
    torch.manual_seed(0)
    ours = est.gradients(model, x, 3)[0]
    torch.manual_seed(0)
    rloo = _rloo_gradients(model, x, 3)
    for s, t in zip(ours, rloo):
        assert torch.allclose(s, t, rtol=1e-5, atol=1e-6)


def _train_own(name, K, steps=40, lr=0.05):
    """The estimator's own parameters trained alone (Adam on their gradients from ``gradients``, the model
    frozen) on the fixture's 3 points repeated 50 times, torch seed 0; returns (state, initial state)."""
    model, x = FIXTURE.make((3,)), FIXTURE.data().repeat(1, 50, 1)
    est = estimators.get(name).bind(model)
    start = {k: v.clone() for k, v in est.state_dict().items()}
    optimiser = torch.optim.Adam(est.parameters(), lr=lr)
    torch.manual_seed(0)
    for _ in range(steps):
        _, own, _ = est.gradients(model, x, K)
        for p, g in zip(est.parameters(), own):
            p.grad = g
        optimiser.step()
    return {k: v.clone() for k, v in est.state_dict().items()}, start


def _load(state):
    def prepare(est):
        with torch.no_grad():
            for k, v in est.state_dict().items():
                v.copy_(state[k].expand_as(v))
    return prepare


@pytest.mark.parametrize("name", ["double_cv", "rodeo"])
def test_trained_own_parameters_move_and_cut_the_variance_below_rloo(name):
    """40 Adam steps (lr 0.05) on the variance objective move every own tensor; then, at K = 2 on the fixture,
    n = 2,000 φ-gradient draws (torch seed 1): the total variance is below half RLOO's (the estimator at its
    initial parameters, = RLOO by the test above; same seed and n), and the estimate stays unbiased
    (α = 1e-3, Bonferroni over the coordinates).  Measured: about 30× below RLOO for both."""
    state, start = _train_own(name, 2)
    for key in state:
        assert not torch.equal(state[key], start[key]), f"{key} did not move"
    make, x = FIXTURE.make, FIXTURE.data()
    torch.manual_seed(1)
    rloo, _ = draws(make, name, x, 2, 2000)
    torch.manual_seed(1)
    trained, exact = draws(make, name, x, 2, 2000, prepare=_load(state))
    assert float(trained.var(0).sum()) < 0.5 * float(rloo.var(0).sum())
    ok, zmax, threshold = unbiased_test(trained, exact)
    assert ok, (zmax, threshold)


@pytest.mark.parametrize("name", ["double_cv", "rodeo"])
def test_unbiased_at_randomised_own_parameters(name):
    """tests/stats.py ``randomise_own`` (seed 1) on sbn_tiny-linear1 at K = 2: n = 2,000 draws (torch seed 0)
    against the exact ELBO gradient, α = 1e-3 (Bonferroni).  The control variate is live there: the draws
    differ from RLOO's under the same noise."""
    make, x = FIXTURE.make, FIXTURE.data()
    torch.manual_seed(0)
    d, exact = draws(make, name, x, 2, 2000, prepare=lambda est: randomise_own(est, seed=1))
    ok, zmax, threshold = unbiased_test(d, exact)
    assert ok, (zmax, threshold)
    torch.manual_seed(0)
    rloo, _ = draws(make, name, x, 2, 2000)
    assert float((d - rloo).abs().mean()) > 1e-3 * float(rloo.abs().mean())


def test_rodeo_control_function_depends_on_its_input():
    """At randomised own parameters (seed 1) RODEO's H_k varies over the D flips of z_k (std over the flips
    > 1e-3 of its scale for every particle and point), so the Stein control variates are not constant."""
    model, x = FIXTURE.make((3,)), FIXTURE.data()
    est = estimators.get("rodeo").bind(model)
    randomise_own(est, seed=1)
    torch.manual_seed(0)
    from estibench.estimators.double_cv import sample_with_gradient
    a, z, _, f, g = sample_with_gradient(model, x, 3)
    with torch.no_grad():
        _, at_flips = est.control_values(z, f, g)  # [K, R, B, D, 2]
    spread = at_flips.std(-2)
    assert bool((spread > 1e-3 * at_flips.abs().mean()).all())
    assert math.isfinite(float(spread.sum()))


@pytest.mark.parametrize("name", ["arms", "double_cv", "rodeo"])
def test_several_stochastic_layers_are_refused_with_one_line(name):
    from estibench.estimators.base import IncompatibleError
    model = fixtures()["sbn_tiny-linear2"].make((0,))
    with pytest.raises(IncompatibleError) as err:
        estimators.get(name).check(model, 2)
    assert "\n" not in str(err.value) and "one stochastic layer" in str(err.value)
