"""Continuous latents: the linear-Gaussian model's closed forms (models/linear_gaussian.py) and the
estimators on it — the reparameterised ``vae`` and ``iwae``, the score-function ``reinforce`` and
``vimco``, and the wake-sleep family ``ws``, ``ww``, ``dww``, ``rw+rws``.

Statistical tests: the model at seed 3 replicated n = 4,000 times (``harness.checks.draws``), 3 data points
sampled from it (seed 0), global seed 0 (the ``rng`` fixture); unbiasedness by ``stats.unbiased_test``
(every coordinate within the Bonferroni threshold, whole-vector false-alarm rate FAMILY_ALPHA = 1e-3);
bias by ``stats.bias_sq`` against the closed-form gradient of each estimator's target."""
import math

import pytest
import torch
from scipy.stats import norm

from estibench import estimators
from estibench.estimators.base import IncompatibleError
from estibench.harness.checks import FAMILY_ALPHA, sample_data
from estibench.harness.runner import build_model
from registered import accepting
from stats import bias_sq, draws, unbiased_test


def lg(seeds):
    return build_model("linear_gaussian", seeds=seeds)


def test_the_closed_forms_match_their_definitions(rng):
    """Bayes: log p(x) = log p(x, z) − log p(z | x) at any z (to 1e-12, float64); the closed-form ELBO and
    −KL(p(z|x) ‖ q(z|x)) agree with 200,000-sample Monte Carlo means within 4 s.e."""
    model = lg((0, 1)).double()
    x = model.sample(5)[1]
    z = torch.randn(3, 2, 5, 2, dtype=torch.float64)
    torch.testing.assert_close(model.log_joint(x, z) - model.posterior(x).log_prob(z),
                               model.log_marginal_exact(x).expand(3, -1, -1), rtol=0, atol=1e-12)
    n = 200_000
    with torch.no_grad():
        q = model.guide(x)
        zq = q.sample((n,))
        log_w = model.log_joint(x, zq) - q.log_prob(zq)
        assert ((log_w.mean(0) - model.elbo_exact(x)).abs() < 4 * log_w.std(0) / math.sqrt(n)).all()
        post = model.posterior(x)
        zp = post.sample((n,))
        gap = q.log_prob(zp) - post.log_prob(zp)  # its mean is −KL(p ‖ q)
        assert ((gap.mean(0) - model.negative_inclusive_kl_exact(x)).abs() < 4 * gap.std(0) / math.sqrt(n)).all()


UNBIASED = [("vae", 1), ("vae", 3), ("iwae", 1)]


@pytest.mark.parametrize("which", ["guide", "generative"])
@pytest.mark.parametrize("name,K", UNBIASED, ids=[f"{n}-K{k}" for n, k in UNBIASED])
def test_reparameterised_estimators_are_unbiased_for_the_closed_form_gradient(name, K, which, rng):
    """vae (its target is the ELBO whatever K) and iwae at K = 1 against the closed-form ELBO gradient, θ and
    φ.  Measured max |z|: 1.30–1.68 against a threshold of 3.93."""
    d, exact = draws(lg, name, sample_data(lg, 3, 0), K, 4000, which=which)
    ok, zmax, threshold = unbiased_test(d, exact)
    assert ok, f"max |z| = {zmax:.2f} ≥ {threshold:.2f}"


def samples(name, x, K, n, which):
    """n independent gradient draws at the seed-3 point (as ``stats.draws``, without an exact gradient)."""
    from estibench.harness.gradients import gradient_draws
    many = lg((3,) * n)
    est = estimators.get(name).bind(many)
    return gradient_draws(many, est, x.expand(n, *x.shape[1:]).contiguous(), K, 1, which=which)[0]


def two_sample_z(a: torch.Tensor, b: torch.Tensor) -> float:
    se = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt()
    return float(((a.mean(0) - b.mean(0)) / se).abs().max())


@pytest.mark.parametrize("which", ["guide", "generative"])
def test_iwae_agrees_with_the_score_function_estimators_of_the_same_bound(which, rng):
    """ELBO_IS^K for K = 3 has no closed form, so iwae's mean is compared with reinforce's and vimco's (both
    unbiased for the same gradient; tested on the enumerable models): no coordinate's two-sample |z| exceeds
    the Bonferroni threshold at 1e-3.  The comparison has power: vae at K = 3 (whose target is the ELBO, not
    the bound) differs from iwae by far more."""
    x = sample_data(lg, 3, 0)
    d_iwae = samples("iwae", x, 3, 4000, which)
    threshold = norm.ppf(1 - FAMILY_ALPHA / (2 * d_iwae.shape[1]))
    for other in ("reinforce", "vimco"):
        d_other = samples(other, x, 3, 4000, which)
        assert two_sample_z(d_iwae, d_other) < threshold, other
    assert two_sample_z(d_iwae, samples("vae", x, 3, 4000, which)) > 2 * threshold


def test_wake_sleep_biases_follow_the_theory(rng):
    """Against the closed-form ∇_φ −KL(p_θ(z|x) ‖ q_φ(z|x)) on the data (RWS Eq. 4): WW's and δ-WW's
    self-normalised bias falls as K grows (K = 2, 8, 32; by more than 4× over the grid), while WS's sleep
    gradient targets the model's own data (Eq. 3), so its bias does not depend on K (within 25 % over the
    grid) and stays far from zero.  Measured ‖bias‖² (‖g*‖² = 3.41): ww 2.05, 0.57, 0.12; dww 1.22, 0.30,
    0.023; ws 2.72, 2.62, 2.63."""
    x = sample_data(lg, 3, 0)
    b = {name: [bias_sq(*draws(lg, name, x, K, 4000, which="guide")) for K in (2, 8, 32)]
         for name in ("ww", "dww", "ws")}
    for name in ("ww", "dww"):
        assert b[name][0] > b[name][1] > b[name][2] and b[name][0] > 4 * b[name][2], (name, b[name])
    assert max(b["ws"]) < 1.25 * min(b["ws"]) and min(b["ws"]) > 1.0, b["ws"]


def test_every_estimator_declaring_normal_latents_is_accepted_and_the_others_refused_with_one_line():
    """A property of the registry, not a list of names: ``check`` accepts exactly the estimators whose declarations
    accept the model (normal among their latent types, needing only what it provides: ``tests/registered.py``)
    and refuses the others with one line, naming the normal latents when they do not declare them; among the
    accepted, the ones this file's tests draw from."""
    model = lg((0,))
    accepted = set()
    for name in estimators.names():
        est = estimators.get(name)
        try:
            est.check(model, max(2, est.min_particles))
        except IncompatibleError as err:
            assert "\n" not in str(err), str(err)
            assert "normal" in est.latent_types or "normal latents" in str(err), str(err)
            continue
        accepted.add(name)
    assert accepted == accepting(model)
    assert {"vae", "iwae", "reinforce", "vimco", "ws", "ww", "dww"} <= accepted
