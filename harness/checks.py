"""Checks an estimator must pass before its numbers are trusted: ``estibench check NAME``.

For an estimator (registered, or ``package.module:Class`` of your own, with options in brackets) this
runs, on every model fixture below whose declared capabilities it accepts:

* the **contract** (``Estimator``'s docstring in ``estimators/base.py``): the surrogate loss is a
  finite scalar and the objective has one value per replicate; ``gradients`` returns one finite
  tensor per model parameter and per own parameter, non-zero for θ and for φ; gradient draws have
  the guide's dimension;
* **replicate independence**: replicate 0's gradients and objective do not change when replicate
  1's parameters do (same noise);
* **state under measurement**: after one training call (``gradients(model, x, K)``), three gradient
  draws at frozen parameters (``gradients(..., with_own=False)``, what every evaluation, the gradient
  basket and ``screen`` call) leave every parameter, buffer and plain attribute of the estimator as
  it was (:mod:`harness.measurement`).  An estimator that updates a running statistic (an EMA
  baseline) inside ``surrogate`` fails it: its measured variance would be that of an estimator whose
  state moves while it is measured.  The harness restores such state after every measurement anyway;
  update it in ``gradients`` when ``with_own`` is true (``examples/ema_baseline.py``);
* for an estimator that declares ``unbiased = True``, on every enumerable fixture (and every
  closed-form one, CLOSED_FORM_GAUSSIAN, at K = 1), the
  **exact-gradient test**: n φ-gradient estimates at one parameter point (every replicate built
  from seed 3) against the exact gradient of its target objective by enumeration (or closed form), coordinate by
  coordinate, |mean − exact| < t⁻¹_{n−1}(1 − α/2D)·se (Bonferroni over the D coordinates; α is the
  whole-vector false-alarm rate, default 1e-3; global seed 0).

The same statistics serve the test suite (``tests/stats.py``).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from estibench import estimators, models
from estibench.estimators.base import IncompatibleError
from estibench.models.protocols import CLOSED_FORM_GAUSSIAN, capabilities

from .gradients import exact_gradient, gradient_draws, gradient_samples

FAMILY_ALPHA = 1e-3  # false-alarm rate of one whole-vector test (Bonferroni over coordinates)


# -- statistics ---------------------------------------------------------------------------------------
def draws(make_model, estimator_name, x, num_particles, n, which="guide", prepare=None, **options):
    """n independent estimates at one parameter point: the point is replicated n times (every
    replicate built from seed 3), so one vectorised pass gives n independent draws.
    ``prepare(estimator)``, if given, runs on both bound estimators (e.g. to set their own
    parameters identically in every replicate).  Returns (draws [n, D], exact gradient [D])."""
    single = make_model((3,))
    many = make_model((3,) * n)
    est_single = estimators.get(estimator_name, **options).bind(single)
    est_many = estimators.get(estimator_name, **options).bind(many)
    if prepare is not None:
        prepare(est_single)
        prepare(est_many)
    xs = x.expand(n, *x.shape[1:]).contiguous()
    d = gradient_draws(many, est_many, xs, num_particles, 1, which=which)[0]
    return d, exact_gradient(single, est_single, x, num_particles, which=which)


def z_scores(d, exact):
    se = d.std(0) / math.sqrt(d.shape[0])
    return (d.mean(0) - exact) / se, se


def unbiased_test(d, exact, alpha=FAMILY_ALPHA):
    """(passed, max |z|, threshold): True when no coordinate's mean departs from the exact value by
    more than the Bonferroni threshold t⁻¹_{n−1}(1 − α/(2D)) (Student t, n draws) standard errors; zero-variance coordinates must
    match exactly."""
    z, se = z_scores(d, exact)
    live = se > 1e-7 * (1 + exact.abs())
    from scipy.stats import t  # here, not at import: `estibench check` with bad input answers before loading it
    # the studentised mean of n draws: Student t with n − 1 degrees of freedom (the normal quantile under-covers at
    # the few draws `screen --draws` may use; at n = 2,000 the two differ by < 1 %)
    threshold = float(t.ppf(1 - alpha / (2 * d.shape[1]), df=d.shape[0] - 1))
    dead_ok = torch.allclose(d.mean(0)[~live], exact[~live], atol=1e-5, rtol=1e-4)
    zmax = float(z[live].abs().max()) if bool(live.any()) else 0.0
    return bool((z[live].abs() < threshold).all() and dead_ok), zmax, threshold


def bias_sq(d, exact):
    """Unbiased estimate of ‖E ĝ − g*‖² from n draws."""
    n = d.shape[0]
    return float(((d.mean(0) - exact) ** 2).sum() - d.var(0).sum() / n)


# -- model fixtures -----------------------------------------------------------------------------------
def sample_data(make, n, seed):
    """n points sampled from make((3,)) (the point every check uses) under torch seed ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make((3,)).sample(n)[1]


def _gmm(seeds):
    return models.get("gmm", seeds=seeds)


def _gmm_data():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return models.get("gmm").true_model().sample(4)[1]


def _sbn_tiny(arch):
    return lambda seeds: models.get("sbn_tiny", seeds=seeds, latent_bits=4, arch=arch,
                                    train_mean=torch.full((49,), 0.3))


@dataclass
class Fixture:
    make: Callable  # seeds -> model
    data: Callable  # () -> x [1, B, ...]
    particles: Tuple[int, ...]
    draws: int


#: the built-in models' fixtures at small settings (no dataset is read)
FIXTURES: Dict[str, Fixture] = {
    "gmm": Fixture(_gmm, _gmm_data, (2, 5), 2000),
    "sbn_tiny-linear1": Fixture(_sbn_tiny("linear1"), lambda: sample_data(_sbn_tiny("linear1"), 3, 0), (1, 2), 2000),
    "sbn_tiny-linear2": Fixture(_sbn_tiny("linear2"), lambda: sample_data(_sbn_tiny("linear2"), 3, 0), (1, 2), 2000),
}
#: registered models the fixtures above cover (at their small settings) or that cannot be enumerated
COVERED = {"gmm", "sbn_tiny", "sbn"}
#: a registered model whose default latent space has at most this many states gets a fixture of its own
MAX_FIXTURE_STATES = 4096


def fixtures() -> Dict[str, Fixture]:
    """:data:`FIXTURES` plus one for every other registered model (a model of your own registered in
    ``models/__init__.py``) whose default latent space is enumerable and small: its own defaults,
    data sampled from it (seed 0, 3 points), K ∈ {1, 2}, 2,000 draws; and for one whose ground truth is in
    closed form (CLOSED_FORM_GAUSSIAN, e.g. ``linear_gaussian``) the same at K = 1 (ELBO_IS^K has no
    closed form beyond it)."""
    from .runner import build_model
    out = dict(FIXTURES)
    for name in models.names():
        if name in COVERED:
            continue
        make = (lambda n: lambda seeds: build_model(n, seeds=seeds))(name)
        try:
            probe = make((0,))
        except Exception:  # a model that needs options to be built gets no automatic fixture
            continue
        if probe.latent.num_states <= MAX_FIXTURE_STATES:
            out[name] = Fixture(make, (lambda m: lambda: sample_data(m, 3, 0))(make), (1, 2), 2000)
        elif CLOSED_FORM_GAUSSIAN in capabilities(probe):  # closed forms stand in for enumeration, at K = 1
            out[name] = Fixture(make, (lambda m: lambda: sample_data(m, 3, 0))(make), (1,), 2000)
    return out


# -- the checks ---------------------------------------------------------------------------------------
@dataclass
class Result:
    model: str
    particles: int
    check: str
    passed: bool
    statistic: str = ""
    threshold: str = ""
    detail: str = ""


def contract(name: str, options: dict, model, x, K: int) -> Optional[str]:
    """None when the estimator keeps its contract on this model and data; else what broke."""
    est = estimators.get(name, **options).bind(model)
    out = est.surrogate(model, x, K)
    if out.loss.dim() != 0 or not bool(torch.isfinite(out.loss)):
        return f"surrogate loss is not a finite scalar (shape {tuple(out.loss.shape)})"
    if tuple(out.objective.shape) != (model.replicates,):
        return f"objective has shape {tuple(out.objective.shape)}, not ({model.replicates},)"
    grads, own, _ = est.gradients(model, x, K)
    if [g.shape for g in grads] != [p.shape for p in model.parameters()]:
        return "gradients do not match model.parameters() in number or shape"
    if [g.shape for g in own] != [p.shape for p in est.parameters()]:
        return "own gradients do not match the estimator's parameters"
    if not all(bool(torch.isfinite(g).all()) for g in grads + own):
        return "a gradient is not finite"
    n_theta = len(model.generative_parameters())
    if not any(bool(g.abs().sum() > 0) for g in grads[:n_theta]):
        return "no gradient for the generative parameters θ"
    if not any(bool(g.abs().sum() > 0) for g in grads[n_theta:]):
        return "no gradient for the guide parameters φ"
    D = sum(p.numel() for p in model.guide_parameters())
    if tuple(gradient_samples(model, est, x, K, 3, which="guide").shape) != (3, D):
        return "gradient draws do not have the guide's dimension"
    return None


def independence(name: str, options: dict, model, x, K: int) -> Optional[str]:
    est = estimators.get(name, **options).bind(model)

    def grads():
        with torch.random.fork_rng():
            torch.manual_seed(5)
            g, own, objective = copy.deepcopy(est).gradients(model, x, K)
        return [t[0].clone() for t in list(g) + list(own)] + [objective[0].clone()]

    before = grads()
    if len(before) != len(list(model.parameters())) + len(list(est.parameters())) + 1:
        return "gradients() does not return one tensor per model and own parameter"
    with torch.no_grad():
        for p in list(model.parameters()) + list(est.parameters()):
            p[1].add_(0.3 * torch.randn_like(p[1]))
    after = grads()
    if not all(torch.allclose(a, b, atol=1e-6, rtol=1e-5) for a, b in zip(before, after)):
        return "replicate 0's gradients changed when replicate 1's parameters did"
    return None


def measurement_state(name: str, options: dict, model, x, K: int) -> Optional[str]:
    """None when gradient draws at frozen parameters leave the estimator's state as it was; else which state
    changed.  One training call first, so state an estimator creates when it first trains exists."""
    from .measurement import changed_state
    est = estimators.get(name, **options).bind(model)
    est.gradients(model, x, K)

    def measure():
        for _ in range(3):
            est.gradients(model, x, K, with_own=False)

    changed = changed_state(est, measure)
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        return (f"3 gradient draws at frozen parameters (gradients(..., with_own=False)) changed its state: {shown}; "
                f"update running statistics only when with_own is true")
    return None


def run_checks(name: str, options: Optional[dict] = None, fixtures: Optional[Dict[str, Fixture]] = None,
               n: Optional[int] = None, alpha: float = FAMILY_ALPHA, seed: int = 0) -> List[Result]:
    """Every check on every fixture the estimator accepts (see the module docstring).  Raises
    ``UnknownNameError`` / ``IncompatibleError`` (one line) for an unknown name or bad options, and
    ``IncompatibleError`` when it accepts none of the fixtures."""
    options = dict(options or {})
    probe = estimators.get(name, **options)  # an unknown name or option fails here, before any fixture is built
    fixtures = globals()["fixtures"]() if fixtures is None else fixtures
    results: List[Result] = []
    for fixture_name, fixture in fixtures.items():
        for K in fixture.particles:
            try:
                estimators.get(name, **options).check(fixture.make((0,)), K)
            except IncompatibleError:
                continue
            torch.manual_seed(seed)
            model = fixture.make((0, 1))
            with torch.random.fork_rng():
                torch.manual_seed(1)
                x2 = model.sample(5)[1]
            for check, fn in (("contract", contract), ("replicate independence", independence),
                              ("state under measurement", measurement_state)):
                torch.manual_seed(seed)
                try:
                    why = fn(name, options, copy.deepcopy(model), x2, K)
                except Exception as err:  # a broken estimator is a failed check, not a crash
                    why = f"raised {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                results.append(Result(fixture_name, K, check, why is None, detail=why or ""))
            built = fixture.make((0,))
            if probe.unbiased and (built.latent.enumerable or CLOSED_FORM_GAUSSIAN in capabilities(built)):
                torch.manual_seed(seed)
                draws_n = int(n or fixture.draws)
                try:
                    d, exact = draws(fixture.make, name, fixture.data(), K, draws_n, **options)
                    ok, zmax, threshold = unbiased_test(d, exact, alpha)
                    results.append(Result(fixture_name, K, f"unbiased φ-gradient (n = {draws_n})", ok,
                                          f"max |z| = {zmax:.2f}", f"{threshold:.2f}"))
                except Exception as err:
                    results.append(Result(fixture_name, K, f"unbiased φ-gradient (n = {draws_n})", False,
                                          detail=f"raised {type(err).__name__}: {err}"))
    if not results:
        raise IncompatibleError(f"estimator {name!r} accepts none of the check fixtures "
                                f"({', '.join(fixtures)})")
    return results
