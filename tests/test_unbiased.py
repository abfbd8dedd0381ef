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


def test_the_false_alarm_rate_holds_at_the_fewest_draws_check_and_screen_test_on():
    """The exact-gradient test's false-alarm rate by simulation at ``MIN_DRAWS`` draws (the fewest ``check --draws``
    accepts and ``screen`` runs the test on), through the function ``check`` and ``screen`` call
    (``unbiased_tests`` → ``whole_vector_test``).  Each count of rejections must lie within 4 binomial standard
    deviations of the stated rate (only its upper edge for the REINFORCE draws, whose 644 coordinates are correlated,
    so that Bonferroni is conservative there):

    * normal draws: 1,000 sets of MIN_DRAWS draws of one coordinate (torch generator seed 0) at α = 0.05: 50 ± 28;
    * REINFORCE's own draws on the GMM fixture (K = 5, the most skewed of the fixtures: sample skewness up to 11 per
      coordinate; 2,000 draws at torch seed 1), resampled with replacement into 1,000 sets of MIN_DRAWS (generator
      seed 2) and tested against the pool's mean, so unbiased by construction: at most 22 at α = 0.01 and 5 at
      α = 1e-3.  The same resampling into sets of 20 draws (what ``check --draws 20`` tested before, with 52 % false
      alarms on the GMM at K = 2) rejects far above the band at both rates: the simulation sees the defect.
    """
    import math

    import torch

    from estibench.harness import checks

    def within(rejected, sets, alpha, upper_only=False):
        mean, sd = sets * alpha, math.sqrt(sets * alpha * (1 - alpha))
        return (upper_only or rejected >= mean - 4 * sd) and rejected <= mean + 4 * sd

    n = checks.MIN_DRAWS
    normal = torch.randn(1000, n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    passed, _, _ = checks.unbiased_tests(normal, torch.zeros(1, dtype=torch.float64), 0.05)
    assert within(int((~passed).sum()), 1000, 0.05), int((~passed).sum())

    fixture = checks.FIXTURES["gmm"]
    with torch.random.fork_rng():
        torch.manual_seed(1)
        pool, _ = checks.draws(fixture.make, "reinforce", fixture.data(), 5, 2000)
    pool = pool.double()
    pool = pool - pool.mean(0)  # centred: the resampled draws' expectation is exactly 0
    zero = torch.zeros(pool.shape[1], dtype=torch.float64)

    def resampled(size, sets=1000):
        """The mean and standard error of each of ``sets`` resampled sets of ``size`` draws, without building them."""
        counts = torch.zeros(sets, len(pool), dtype=torch.float64)
        picks = torch.randint(0, len(pool), (sets, size), generator=torch.Generator().manual_seed(2))
        counts.scatter_add_(1, picks, torch.ones(sets, size, dtype=torch.float64))
        mean = counts @ pool / size
        var = ((counts @ pool ** 2) / size - mean ** 2).clamp(min=0) * size / (size - 1)
        return mean, var.sqrt() / math.sqrt(size)

    at_min, at_20 = resampled(n), resampled(20)
    for alpha in (0.01, 1e-3):
        rejected = int((~checks.whole_vector_test(*at_min, zero, n, alpha)[0]).sum())
        assert within(rejected, 1000, alpha, upper_only=True), (alpha, rejected)
        rejected_20 = int((~checks.whole_vector_test(*at_20, zero, 20, alpha)[0]).sum())
        assert not within(rejected_20, 1000, alpha), (alpha, rejected_20)
