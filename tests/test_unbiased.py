"""Every estimator that declares ``unbiased = True`` against the exact gradient, on every enumerable
model fixture it accepts — no hand-written name lists: a new unbiased estimator is picked up here.

φ-gradient estimates at one parameter point (seed 3; ``tests/stats.draws`` replicates it n times,
one vectorised pass) are compared coordinate by coordinate with the exact gradient of the objective
the estimator targets (ELBO_IS^K, by enumeration; ``harness.exact``).  Global RNG seed 0 (the ``rng``
fixture); whole-vector false-alarm rate FAMILY_ALPHA = 1e-3 per test (Bonferroni over the guide's
D coordinates, ``tests/stats.unbiased_test``).  Fixtures (model, data, particle counts K, draws n):

* ``gmm``              the 20-cluster GMM at the far init, 4 points from the true model; K ∈ {2, 5}, n = 2000
* every other registered model whose default latent space has ≤ 4,096 states (``harness/checks.py``
  ``fixtures``): its defaults, 3 points sampled from it (seed 0); K ∈ {1, 2}, n = 2000
* ``tiny``             3 Bernoulli bits, factorised guide, 4 points (seed 2); K = 3, n = 4000
* ``tiny_layered``     the same with the layered Bernoulli interface; K = 3, n = 4000
* ``sbn_tiny-linear1`` the enumerable SBN, 4 bits (16 states), 3 points (seed 0); K ∈ {1, 2}, n = 2000
* ``sbn_tiny-linear2`` two layers of 4 bits (256 states); K ∈ {1, 2}, n = 2000
* every registered model with closed-form ground truth (``linear_gaussian``): K = 1, n = 2000

Estimators with own parameters are also tested at randomised own parameters
(``tests/test_own_parameters.py``).  An estimator below its ``min_particles`` skips that K.
"""
import pytest

from estibench import estimators
from estibench.estimators.base import IncompatibleError
from estibench.harness.checks import fixtures, sample_data
from estibench.models.protocols import CLOSED_FORM_GAUSSIAN, capabilities
from stats import draws, unbiased_test
from tiny_models import TinyBernoulli, TinyLayered


#: name: (make(seeds), data(), Ks, n): the harness's fixtures (every registered enumerable model,
#: harness/checks.py) and the two tiny Bernoulli models of the tests
FIXTURES = {name: (f.make, f.data, f.particles, f.draws) for name, f in fixtures().items()}
FIXTURES.update({
    "tiny": (lambda s: TinyBernoulli(seeds=s), lambda: sample_data(lambda s: TinyBernoulli(seeds=s), 4, 2), (3,), 4000),
    "tiny_layered": (lambda s: TinyLayered(seeds=s), lambda: sample_data(lambda s: TinyLayered(seeds=s), 4, 2), (3,),
                     4000),
})


def accepts(name, make, K):
    model = make((0,))
    if not (model.latent.enumerable or CLOSED_FORM_GAUSSIAN in capabilities(model)):
        return False
    try:
        estimators.get(name).check(model, K)
    except IncompatibleError:
        return False
    return True


UNBIASED = [n for n in estimators.names() if estimators.get(n).unbiased]
CASES = [(name, fixture, K) for name in UNBIASED for fixture, (make, _, Ks, _) in FIXTURES.items()
         for K in Ks if accepts(name, make, K)]


def test_every_unbiased_estimator_is_tested_somewhere():
    tested = {name for name, _, _ in CASES}
    assert tested == set(UNBIASED), set(UNBIASED) - tested
    assert {"reinforce", "vimco", "relax", "rebar", "arm", "disarm", "nvil", "muprop"} <= tested


@pytest.mark.parametrize("name,fixture,K", CASES, ids=[f"{n}-{f}-K{K}" for n, f, K in CASES])
def test_unbiased_for_the_exact_phi_gradient(name, fixture, K, rng):
    make, data, _, n = FIXTURES[fixture]
    d, exact = draws(make, name, data(), K, n)
    ok, zmax, threshold = unbiased_test(d, exact)
    assert ok, f"{name} on {fixture}, K={K}: max |z| = {zmax:.2f} ≥ {threshold:.2f}"


def test_a_newly_registered_enumerable_model_gets_the_exact_gradient_tests(monkeypatch):
    """A model added by its registry line (here a 4-cluster GMM) becomes a fixture of the exact-gradient
    checks without a hand list: ``fixtures()`` builds it from its defaults (seed 0 data, n = 2000, α = 1e-3)."""
    from estibench import models
    from estibench.harness.checks import run_checks
    from estibench.models.gmm import GMM

    class SmallGMM(GMM):
        def __init__(self, seeds=(0,), **options):
            options.setdefault("num_clusters", 4)
            super().__init__(seeds=seeds, **options)

    monkeypatch.setitem(models.REGISTRY._entries, "small_gmm", SmallGMM)
    found = fixtures()
    assert "small_gmm" in found and found["small_gmm"].particles == (1, 2)
    results = run_checks("reinforce", fixtures={"small_gmm": found["small_gmm"]})
    exact = [r for r in results if r.check.startswith("unbiased")]
    assert len(exact) == 2 and all(r.passed for r in results), [(r.check, r.statistic, r.detail) for r in results]
