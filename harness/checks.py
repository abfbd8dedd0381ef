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
  whole-vector false-alarm rate, default 1e-3; global seed 0).  Student t is exact for normal draws; gradient
  draws are skewed, and the studentised mean of few skewed draws is much heavier-tailed than t, so the test runs
  on at least :data:`MIN_DRAWS` (2,000) draws, where its rate was measured by simulation (``check --draws``
  below it is refused).  Before any check, the draws of the largest test (n × D float32, with temporaries) are
  compared with the memory available: what cannot fit is refused with one line; more draws than
  :data:`DRAW_CHUNK` are drawn in passes of that many (the replicated model's memory does not grow with n), and
  a few timed draws say how long the tests will take.

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
#: the fewest draws on which ``check`` and ``screen`` run the exact-gradient (bias) test.  Below it the test's
#: false-alarm rate is not held for skewed draws.  Measured on REINFORCE's draws on the GMM fixture split into
#: disjoint sets (rejections / sets): K = 2 (400,000 draws, seeds 100–119), α = 1e-3: 52 % of sets of 20 draws,
#: 14 % of 100, 3.7 % of 200, 0.37 % of 500, 0/400 of 1,000, 0/200 of 2,000; K = 5, the more skewed (sample skewness
#: up to 11, 600,000 draws, seeds 100–109 and 200–219): α = 1e-3: 2/600 of 1,000 draws, 0/300 of 2,000;
#: α = 0.01: 10/600 of 1,000, 3/300 of 2,000; α = 0.05: 24/600 of 1,000, 5/300 of 2,000.  tests/test_unbiased.py
#: keeps the rate at MIN_DRAWS by simulation
MIN_DRAWS = 2000


# -- statistics ---------------------------------------------------------------------------------------
#: draws per vectorised pass of :func:`draws`: the model is replicated this many times at most, so that its memory
#: does not grow with n (n ≤ DRAW_CHUNK: one pass, the numbers of an unchunked pass; 20,000 is the most any test
#: of this project draws at one point, so every tested number is that of one pass)
DRAW_CHUNK = 20000


def draws(make_model, estimator_name, x, num_particles, n, which="guide", prepare=None, **options):
    """n independent estimates at one parameter point: the point is replicated (every replicate
    built from seed 3), so one vectorised pass gives up to :data:`DRAW_CHUNK` independent draws.
    ``prepare(estimator)``, if given, runs on both bound estimators (e.g. to set their own
    parameters identically in every replicate).  Returns (draws [n, D], exact gradient [D])."""
    def replicated(c):
        many = make_model((3,) * c)
        return many, estimators.get(estimator_name, **options).bind(many)

    c = min(DRAW_CHUNK, int(n))
    single = make_model((3,))
    many = make_model((3,) * c)  # in the order of the unchunked version: its random stream, so its numbers
    est_single = estimators.get(estimator_name, **options).bind(single)
    est_many = estimators.get(estimator_name, **options).bind(many)
    if prepare is not None:
        prepare(est_single)
        prepare(est_many)
    parts, done, passes = [], 0, {c: (many, est_many, x.expand(c, *x.shape[1:]).contiguous())}
    while done < n:
        c = min(DRAW_CHUNK, n - done)
        if c not in passes:  # the last, shorter pass
            many, est_many = replicated(c)
            if prepare is not None:
                prepare(est_many)
            passes = {c: (many, est_many, x.expand(c, *x.shape[1:]).contiguous())}
        many, est_many, xs = passes[c]
        parts.append(gradient_draws(many, est_many, xs, num_particles, 1, which=which)[0])
        done += c
    d = parts[0] if len(parts) == 1 else torch.cat(parts)
    return d, exact_gradient(single, est_single, x, num_particles, which=which)


def z_scores(d, exact):
    """(studentised means, standard errors) of draws ``d`` [..., n, D] against ``exact`` [D] (or [..., D])."""
    se = d.std(-2) / math.sqrt(d.shape[-2])
    return (d.mean(-2) - exact) / se, se


def bonferroni_threshold(n: int, D: int, alpha: float = FAMILY_ALPHA) -> float:
    """The Bonferroni threshold t⁻¹_{n−1}(1 − α/(2D)) of the whole-vector test on n draws of D coordinates: the
    studentised mean of n draws is Student t with n − 1 degrees of freedom (exactly so for normal draws)."""
    from scipy.stats import t  # here, not at import: `estibench check` with bad input answers before loading it
    return float(t.ppf(1 - alpha / (2 * D), df=n - 1))


def unbiased_tests(d, exact, alpha=FAMILY_ALPHA):
    """The whole-vector test of :func:`unbiased_test` on a batch of draw sets ``d`` [..., n, D] at once:
    (passed [...] bool tensor, max |z| [...] over the live coordinates, threshold)."""
    return whole_vector_test(d.mean(-2), d.std(-2) / math.sqrt(d.shape[-2]), exact, d.shape[-2], alpha)


def whole_vector_test(mean, se, exact, n: int, alpha=FAMILY_ALPHA):
    """The decision of :func:`unbiased_tests` from the draws' means and standard errors [..., D] (n draws each):
    every live coordinate's |mean − exact| < t⁻¹_{n−1}(1 − α/(2D))·se, every zero-variance one equal to exact."""
    exact = exact.expand_as(se)
    z = (mean - exact) / se
    live = se > 1e-7 * (1 + exact.abs())
    thr = bonferroni_threshold(n, se.shape[-1], alpha)
    dead_off = ~((mean - exact).abs() <= 1e-5 + 1e-4 * exact.abs()) & ~live  # torch.allclose's rule (NaN fails)
    zmax = torch.where(live, z.abs(), torch.zeros_like(z)).amax(-1)
    return (zmax < thr) & ~dead_off.any(-1), zmax, thr


def unbiased_test(d, exact, alpha=FAMILY_ALPHA):
    """(passed, max |z|, threshold): True when no coordinate's mean departs from the exact value by
    more than the Bonferroni threshold t⁻¹_{n−1}(1 − α/(2D)) (Student t, n draws) standard errors; zero-variance
    coordinates must match exactly.

    The false-alarm rate is α for normal draws at any n.  Gradient draws are skewed (REINFORCE's on the GMM: sample
    skewness up to 7 per coordinate), and the studentised mean of few skewed draws is far heavier-tailed than t
    (52 % false alarms at n = 20, α = 1e-3): ``check`` and ``screen`` run this test only on at least
    :data:`MIN_DRAWS` draws (see there)."""
    passed, zmax, thr = unbiased_tests(d, exact, alpha)
    return bool(passed), float(zmax), thr


# -- resources ----------------------------------------------------------------------------------------
def available_memory() -> Optional[int]:
    """Bytes of memory this process may still use: /proc/meminfo's MemAvailable (else the free physical pages),
    lowered to the room left under a cgroup memory limit; None where none of these can be read."""
    import os
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit, encoding="ascii") as fh:
                text = fh.read().strip()
            if text == "max":
                continue
            with open(usage, encoding="ascii") as fh:
                used = int(fh.read().strip())
            if int(text) < 1 << 60:  # cgroup v1 writes "no limit" as a huge number
                found.append(max(0, int(text) - used))
        except (OSError, ValueError):
            continue
    return min(found) if found else None


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.3g} GB"


def draws_memory(n: int, D: int) -> int:
    """Bytes the exact-gradient test of n draws of D coordinates holds at once: the float32 draws and the
    temporaries of their mean and standard deviation (counted as two more copies)."""
    return 3 * 4 * int(n) * int(D)


class TooManyDraws(ValueError):
    """More draws than the memory this machine has (one line; ``check`` exits with status 2)."""


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
               n: Optional[int] = None, alpha: float = FAMILY_ALPHA, seed: int = 0, note=None) -> List[Result]:
    """Every check on every fixture the estimator accepts (see the module docstring).  Raises
    ``UnknownNameError`` / ``IncompatibleError`` (one line) for an unknown name or bad options,
    ``IncompatibleError`` when it accepts none of the fixtures, and :class:`TooManyDraws` (a ``ValueError``) before
    any check when ``n`` draws cannot fit in the memory available.  With fewer than :data:`MIN_DRAWS` draws the
    exact-gradient test is not run (its row says so and does not pass; ``estibench check`` refuses such ``--draws``).
    ``note(line)``, if given, hears how long the exact-gradient tests will take when ``n`` exceeds
    :data:`DRAW_CHUNK`."""
    options = dict(options or {})
    probe = estimators.get(name, **options)  # an unknown name or option fails here, before any fixture is built
    fixtures = globals()["fixtures"]() if fixtures is None else fixtures
    plan = _plan(name, options, probe, fixtures)
    if not plan:
        raise IncompatibleError(f"estimator {name!r} accepts none of the check fixtures "
                                f"({', '.join(fixtures)})")
    _check_resources(name, options, plan, n, note)
    results: List[Result] = []
    for fixture_name, fixture, K, tested in plan:
        model, x2 = check_inputs(fixture, seed)
        for check in STRUCTURAL:
            results.append(structural_check(check, name, options, copy.deepcopy(model), x2, fixture_name, K, seed))
        if tested:
            results.append(exact_gradient_check(name, options, fixture_name, fixture, K, n, alpha, seed))
    return results


#: the checks every accepted fixture gets, by their rows' names, in the order of ``estibench check``'s table
STRUCTURAL = ("contract", "replicate independence", "state under measurement")


def check_inputs(fixture: Fixture, seed: int = 0):
    """(model, x) of a fixture's structural checks: its model at seeds (0, 1) built after ``torch.manual_seed(seed)``,
    and 5 points sampled from it under seed 1 (the caller's stream is left as it was)."""
    torch.manual_seed(seed)
    model = fixture.make((0, 1))
    with torch.random.fork_rng():
        torch.manual_seed(1)
        x2 = model.sample(5)[1]
    return model, x2


def structural_check(check: str, name: str, options: dict, model, x, fixture_name: str, K: int,
                     seed: int = 0) -> Result:
    """One structural check's row (``check`` a key of :data:`STRUCTURAL`), under ``torch.manual_seed(seed)``; an
    estimator that raises fails the check instead of crashing it."""
    fn = {"contract": contract, "replicate independence": independence,
          "state under measurement": measurement_state}[check]
    torch.manual_seed(seed)
    try:
        why = fn(name, options, model, x, K)
    except Exception as err:  # a broken estimator is a failed check, not a crash
        why = f"raised {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return Result(fixture_name, K, check, why is None, detail=why or "")


def exact_gradient_check(name: str, options: dict, fixture_name: str, fixture: Fixture, K: int,
                         n: Optional[int] = None, alpha: float = FAMILY_ALPHA, seed: int = 0) -> Result:
    """The exact-gradient test's row: ``n`` (default: the fixture's) draws against the exact gradient, the
    whole-vector test at ``alpha``, under ``torch.manual_seed(seed)``; fewer than :data:`MIN_DRAWS` draws are not
    run (the row says so and does not pass)."""
    torch.manual_seed(seed)
    draws_n = int(n or fixture.draws)
    title = f"unbiased φ-gradient (n = {draws_n})"
    if draws_n < MIN_DRAWS:
        return Result(fixture_name, K, title, False,
                      detail=f"not run: fewer than {MIN_DRAWS:,} draws, the fewest at which its false-alarm rate "
                             f"holds for skewed draws")
    try:
        d, exact = draws(fixture.make, name, fixture.data(), K, draws_n, **options)
        ok, zmax, threshold = unbiased_test(d, exact, alpha)
        return Result(fixture_name, K, title, ok, f"max |z| = {zmax:.2f}", f"{threshold:.2f}")
    except Exception as err:
        return Result(fixture_name, K, title, False, detail=f"raised {type(err).__name__}: {err}")


def _plan(name: str, options: dict, probe, fixtures: Dict[str, Fixture]) -> List[tuple]:
    """(fixture name, fixture, K, whether the exact-gradient test runs) for every pair the estimator accepts."""
    plan = []
    for fixture_name, fixture in fixtures.items():
        for K in fixture.particles:
            built = fixture.make((0,))
            try:
                estimators.get(name, **options).check(built, K)
            except IncompatibleError:
                continue
            tested = bool(probe.unbiased and (built.latent.enumerable or CLOSED_FORM_GAUSSIAN in capabilities(built)))
            plan.append((fixture_name, fixture, K, tested))
    return plan


def _check_resources(name: str, options: dict, plan: List[tuple], n: Optional[int], note) -> None:
    """Before any check runs: raise :class:`TooManyDraws` when the largest exact-gradient test's draws cannot fit in
    the memory available; with more draws than :data:`DRAW_CHUNK`, time a few draws and say (``note``) how long
    the tests will take."""
    import time
    tests = [(fixture_name, fixture, K) for fixture_name, fixture, K, tested in plan if tested]
    if not tests:
        return
    sizes = {fixture_name: sum(p.numel() for p in fixture.make((0,)).guide_parameters())
             for fixture_name, fixture, _ in tests}
    counts = {fixture_name: int(n or fixture.draws) for fixture_name, fixture, _ in tests}
    worst = max(sizes, key=lambda f: draws_memory(counts[f], sizes[f]))
    need, room = draws_memory(counts[worst], sizes[worst]), available_memory()
    if room is not None and need > room:
        most = room // draws_memory(1, sizes[worst])
        raise TooManyDraws(f"{counts[worst]:,} draws do not fit in memory: the exact-gradient test on {worst} holds "
                           f"{counts[worst]:,} draws × {sizes[worst]:,} coordinates, about {_gb(need)}, and "
                           f"{_gb(room)} is available; use at most {most:,} draws")
    if note is None or max(counts.values()) <= DRAW_CHUNK:
        return
    fixture_name, fixture, K = tests[0]
    probe_n = 50
    with torch.random.fork_rng():
        started = time.perf_counter()
        draws(fixture.make, name, fixture.data(), K, probe_n, **options)
        per_draw = (time.perf_counter() - started) / probe_n
    total = per_draw * sum(counts[f] for f, _, _ in tests)
    note(f"the {len(tests)} exact-gradient tests take about {_duration(total)} ({per_draw * 1e3:.2g} ms per draw, "
         f"timed on {probe_n} draws of {fixture_name}, K = {K}); peak memory about {_gb(need)}")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"
