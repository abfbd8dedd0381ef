"""Unbiasedness for every value of an estimator's own parameters (baselines, control variates,
temperatures, scales, running statistics), not only at their initial values.

For every registered estimator declared unbiased that owns parameters or buffers once bound, on
every enumerable model it accepts (the GMM at the far init; ``sbn_tiny`` linear2 with 2 × 4 bits),
at its initial parameters and at a randomised point (tests/stats.py ``randomise_own``: the same
point in every replicate), n = 2,000 independent φ-gradient draws at frozen parameters are
compared with the exact gradient of its target objective (whole-vector false-alarm rate 1e-3,
Bonferroni over the coordinates: |mean − exact| < Φ⁻¹(1 − 1e-3/2D) standard errors).  Torch seed
0 before the draws, randomisation seed 1, data as in tests/test_ground_truth.py and
tests/test_rebar_relax.py; outcomes are deterministic, the rate says how often a correct estimator
would fail under a fresh seed.

At the GMM's initialisation RELAX's control MLP sees raw x (up to ≈ 190) through tanh and barely
depends on g, which once hid a biased categorical RELAX; the randomised point shrinks its x-input
weights so that the control variate depends on g, and the test checks that it does.
"""
import pytest
import torch

from estibench import estimators
from estibench.estimators.base import IncompatibleError
from stats import draws, gmm, gmm_data, randomise_own, unbiased_test
from test_rebar_relax import data as sbn_data, maker

N = 2000

#: estimator variants whose own parameters matter (options as the suites use them)
VARIANTS = [("relax", {}), ("relax", {"variant": "relax_code"}), ("rebar", {}), ("rebar", {"variant": "rebar_code"}),
            ("rebar", {"variant": "relax_code"}), ("nvil", {}), ("muprop", {})]
MODELS = {"gmm": (gmm, gmm_data), "sbn_tiny-linear2": (maker("linear2"), lambda: sbn_data(maker("linear2")))}

# the x-input rows of the categorical control MLP (first layer, row 0 of [in, out]) kept small
SHRINK = {"control.layers.0.weight": lambda w: torch.cat([0.01 * w[:, :1], w[:, 1:]], 1)}


def own_state(est):
    return list(est.parameters()) + [b for b in est.buffers() if b is not None]


def cases():
    out = []
    for name, opts in VARIANTS:
        assert estimators.get(name, **opts).unbiased
        for model_name, (make, _) in MODELS.items():
            est = estimators.get(name, **opts)
            try:
                est.check(make((0,)), 2)
            except IncompatibleError:
                continue
            for point in ("init", "random"):
                out.append(pytest.param(name, opts, model_name, point,
                                        id=f"{name}{opts or ''}-{model_name}-{point}"))
    return out


def test_every_unbiased_estimator_with_own_parameters_is_covered():
    """Every registered unbiased estimator that owns parameters appears in VARIANTS (the project's registry lines;
    a plug-in another test ran by its import path, e.g. ``estibench.examples.ema_baseline:EMABaseline``, is not one)."""
    make = MODELS["sbn_tiny-linear2"][0]
    covered = {n for n, _ in VARIANTS}
    for name in estimators.names():
        if ":" in name:
            continue
        est = estimators.get(name)
        if not est.unbiased:
            continue
        for make_model, _ in MODELS.values():
            model = make_model((0,))
            try:
                est.check(model, max(2, est.min_particles))
            except IncompatibleError:
                continue
            if own_state(estimators.get(name).bind(model)):
                assert name in covered, f"{name} owns parameters but is not tested at randomised ones"
    assert make is not None


@pytest.mark.parametrize("name,opts,model_name,point", cases())
def test_unbiased_at_initial_and_randomised_own_parameters(name, opts, model_name, point):
    make, make_data = MODELS[model_name]
    K = 2 if model_name == "gmm" else 1
    x = make_data()
    prepare = None
    if point == "random":
        def prepare(est):
            randomise_own(est, seed=1, shrink=SHRINK)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        d, exact = draws(make, name, x, K, N, prepare=prepare, **opts)
    ok, zmax, threshold = unbiased_test(d, exact)
    assert ok, f"{name} {opts} on {model_name} at {point} parameters: max |z| = {zmax:.2f} ≥ {threshold:.2f}"


def test_randomised_categorical_control_variate_depends_on_g():
    """The randomised point is a real test: c_ρ(g) varies with g at fixed x (std over 200 draws of g
    ≥ 0.05 at every data point), whereas at initialisation it barely does (std < 0.05 somewhere)."""
    x = gmm_data()
    spread = {}
    for point in ("init", "random"):
        model = gmm((3,))
        est = estimators.get("relax").bind(model)
        if point == "random":
            randomise_own(est, seed=1, shrink=SHRINK)
        logits = model.guide(x).logits.detach()
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(0)
            g = logits - torch.empty(200, *logits.shape).exponential_().log()  # [200, R, B, C]
            per_draw = torch.stack([est.control_variate(x, g[i:i + 1]) for i in range(200)])  # [200, R, B]
        spread[point] = float(per_draw.std(0).min())
    assert spread["random"] > 0.05 > spread["init"], spread


def test_the_harness_binds_an_unbound_estimator_and_refuses_a_mismatched_one():
    """``harness.gradient_samples`` with ``estimators.get(name)`` never bound works (it is bound to the
    model, as ``.bind(model)`` would); one bound to a model of another replicate count is refused
    with one line that says what to call."""
    from estibench import harness
    model = gmm((0, 1))
    x = gmm_data()
    for name in ("relax", "vimco"):
        est = estimators.get(name)
        assert est.bound_replicates is None
        with torch.random.fork_rng():
            torch.manual_seed(0)
            a = harness.gradient_samples(model, est, x.expand(2, -1), 2, 3)
        assert est.bound_replicates == 2
        with torch.random.fork_rng():
            torch.manual_seed(0)
            b = harness.gradient_samples(model, estimators.get(name).bind(model), x.expand(2, -1), 2, 3)
        assert torch.equal(a, b)
    other = estimators.get("relax").bind(gmm((0,)))
    with pytest.raises(IncompatibleError) as err:
        harness.gradient_samples(model, other, x.expand(2, -1), 2, 3)
    assert "\n" not in str(err.value) and ".bind(model)" in str(err.value)
