"""``estibench check`` inside your own test suite, in the manner of scikit-learn's ``parametrize_with_checks``.

A plug-in author tests an estimator of their own with the very checks ``estibench check NAME`` runs
(:mod:`estibench.harness.checks`), one pytest case per check and fixture::

    from estibench.testing import parametrize_with_checks
    from mypackage.estimators import MyEstimator

    @parametrize_with_checks(["mypackage.estimators:MyEstimator[decay=0.5]", MyEstimator])
    def test_estibench_checks(estimator, check):
        check()

The cases are named ``MyEstimator[decay=0.5]-contract-gmm-K2`` (estimator, check, fixture, particle count).  The
checks, per model fixture the estimator accepts (:func:`estibench.harness.checks.fixtures`: the GMM, the enumerable
SBNs and every other small registered model; pass ``fixtures=`` for a subset), are:

* ``contract``: the contract (:func:`~estibench.harness.checks.contract`);
* ``independence``: replicate independence (:func:`~estibench.harness.checks.independence`);
* ``measurement_state``: state under measurement (:func:`~estibench.harness.checks.measurement_state`);
* ``unbiased``: for an estimator that declares ``unbiased = True``, on every enumerable (or closed-form) fixture,
  the exact-gradient test (:func:`~estibench.harness.checks.draws` and
  :func:`~estibench.harness.checks.unbiased_test`).

The statistics and false-alarm rates are those of ``estibench check``, computed by the same functions: global torch
seed 0 before every check (``seed=``), n = 2,000 gradient draws per exact-gradient test (the fixture's own number;
``n=`` sets another, at least :data:`~estibench.harness.checks.MIN_DRAWS` = 2,000, where the rate was measured for
skewed draws; fewer are refused, as ``check --draws`` refuses them), and a family-wise false-alarm rate α = 1e-3 per
test (:data:`~estibench.harness.checks.FAMILY_ALPHA`; ``alpha=``): the whole φ-gradient vector is one test, Bonferroni
over its D coordinates with Student-t quantiles t⁻¹_{n−1}(1 − α/2D).  With a fixed seed a verdict is reproducible,
not redrawn on every run; a suite of m exact-gradient tests raises a false alarm with probability at most m·α.  Each
case gives the verdict, statistic and message of the matching row of ``estibench check``'s table
(``tests/test_testing.py`` holds them equal to :func:`~estibench.harness.checks.run_checks`'s rows).

A check passes (returns None) or raises ``AssertionError`` with the failing row in one line.  A fixture the
estimator refuses (``Estimator.check`` raises ``IncompatibleError``; ``estibench check`` leaves it out of its table)
gives cases that skip (``pytest.skip``; ``unittest.SkipTest`` where pytest is not loaded) with the refusal as the
reason.  :func:`check_estimator` runs every check at once and raises one ``AssertionError`` listing the failures.

A spec is a registry name or ``package.module:Class``, with options in the command line's brackets
(``rebar[variant=rebar_code]``); an ``Estimator`` subclass (its registry name, else its ``module:qualname``; a class
that cannot be imported by that path, e.g. one defined inside a test function, is registered in this process under
it); or a pair ``(spec, {option: value})``.  A spec that cannot be checked (unreadable, unknown, a bad option, an
estimator that accepts none of the fixtures) is one :class:`SpecError` (a ``ValueError``) with a one-line message,
raised when the checks are made, so at collection time under :func:`parametrize_with_checks`.

This module imports pytest only inside :func:`parametrize_with_checks` (and to skip a refused fixture when pytest is
already loaded): ``import estibench.testing`` works without it.
"""
from __future__ import annotations

import numbers
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from estibench import estimators
from estibench.estimators.base import Estimator, IncompatibleError
from estibench.harness import checks as _checks
from estibench.harness.checks import FAMILY_ALPHA, MIN_DRAWS, Fixture, Result
from estibench.harness.grammar import UsageError, parse_estimators
from estibench.models.protocols import CLOSED_FORM_GAUSSIAN, capabilities
from estibench.models.registry import UnknownNameError, import_path

__all__ = ["EstimatorSpec", "Check", "SpecError", "KINDS", "estimator_checks", "check_estimator",
           "parametrize_with_checks", "resolve", "failure_line"]

#: check kind → the name of its row in ``estibench check``'s table (``harness.checks.STRUCTURAL``; ``unbiased``'s row
#: also names n)
KINDS: Dict[str, str] = {
    "contract": "contract",
    "independence": "replicate independence",
    "measurement_state": "state under measurement",
    "unbiased": "unbiased φ-gradient",
}

Spec = Union[str, type, Tuple[Union[str, type], dict]]


class SpecError(ValueError):
    """An estimator spec that cannot be checked; ``str()`` is one line (what ``estibench check`` prints, exit 2)."""


@dataclass(frozen=True)
class EstimatorSpec:
    """One estimator to check: the registry ``name`` (or ``package.module:Class``) and its ``options`` (pairs)."""

    name: str
    options: Tuple[Tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> Dict[str, Any]:
        return dict(self.options)

    @property
    def text(self) -> str:
        """The spec as ``estibench check`` takes it: ``package.module:Class[option=value,...]``."""
        return self.name + _bracket(self.options)

    @property
    def label(self) -> str:
        """The short name in test ids: ``Class[option=value]`` (the part after ``:``, and after ``<locals>.``) or the
        registry name."""
        return self.name.rpartition(":")[2].rpartition("<locals>.")[2] + _bracket(self.options)

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True, eq=False)
class Check:
    """One check of one estimator on one fixture at K particles: call it (no arguments) to run it.  Returns None
    when it passes, raises ``AssertionError`` (the failing row of ``estibench check``'s table, one line) when it fails,
    and skips when the estimator refuses the fixture (``refused``: the refusal)."""

    estimator: EstimatorSpec
    kind: str  # a key of KINDS
    fixture: str
    particles: int
    fixture_object: Fixture = field(repr=False)
    n: Optional[int] = None  # draws per exact-gradient test (None: the fixture's)
    alpha: float = FAMILY_ALPHA
    seed: int = 0
    refused: Optional[str] = None

    @property
    def name(self) -> str:
        """``Class[options]-kind-fixture-KK``: the test id :func:`parametrize_with_checks` gives it."""
        return f"{self.estimator.label}-{self.kind}-{self.fixture}-K{self.particles}"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Check {self.name}>"

    def result(self) -> Result:
        """The row ``estibench check`` prints for this check (:class:`~estibench.harness.checks.Result`), computed as
        :func:`~estibench.harness.checks.run_checks` computes it, under a forked torch RNG (the caller's stream is
        left as it was).  Skips a refused fixture."""
        if self.refused is not None:
            _skip(self.refused)
        name, options, K, fixture = self.estimator.name, self.estimator.kwargs, self.particles, self.fixture_object
        with torch.random.fork_rng():
            if self.kind == "unbiased":
                return _checks.exact_gradient_check(name, options, self.fixture, fixture, K, self.n, self.alpha,
                                                    self.seed)
            model, x2 = _checks.check_inputs(fixture, self.seed)
            return _checks.structural_check(KINDS[self.kind], name, options, model, x2, self.fixture, K,
                                            self.seed)

    def __call__(self) -> None:
        result = self.result()
        if not result.passed:
            raise AssertionError(failure_line(self.estimator, result))


def failure_line(estimator: EstimatorSpec, result: Result) -> str:
    """One line for a failed row: ``estibench check SPEC: MODEL, K = k, CHECK: FAIL (STATISTIC, threshold T): DETAIL``
    (the columns of ``estibench check``'s table)."""
    stat = f" ({result.statistic}, threshold {result.threshold})" if result.statistic else ""
    detail = result.detail.splitlines()[0] if result.detail else ""
    return (f"estibench check {estimator.text}: {result.model}, K = {result.particles}, {result.check}: FAIL{stat}"
            + (f": {detail}" if detail else ""))


# -- making the checks ------------------------------------------------------------------------------------------------

def estimator_checks(spec: Spec, options: Optional[dict] = None, fixtures: Optional[Dict[str, Fixture]] = None,
                     n: Optional[int] = None, *, alpha: float = FAMILY_ALPHA, seed: int = 0) -> List[Check]:
    """Every :class:`Check` ``estibench check`` would run on ``spec`` (with ``options`` added to those in its
    brackets), in the order of its table: per fixture (default: :func:`~estibench.harness.checks.fixtures`) and
    particle count, ``contract``, ``independence``, ``measurement_state`` and, for an estimator that declares
    ``unbiased``, on an enumerable or closed-form fixture, ``unbiased``.  A refused (fixture, K) gives the same kinds,
    each skipping with the refusal.  Raises :class:`SpecError` for a spec that cannot be checked, ``ValueError`` for
    ``n`` below :data:`~estibench.harness.checks.MIN_DRAWS` or ``alpha`` outside (0, 1), and
    :class:`~estibench.harness.checks.TooManyDraws` when the draws cannot fit in memory."""
    estimator = resolve(spec, options)
    if n is not None and (not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < MIN_DRAWS):
        raise ValueError(f"n must be at least {MIN_DRAWS} (below it the exact-gradient test's false-alarm rate does "
                         f"not hold for skewed gradient draws), got {n!r}")
    if not (isinstance(alpha, numbers.Real) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not isinstance(seed, numbers.Integral) or not -2 ** 63 <= seed < 2 ** 64:
        raise ValueError(f"seed must be a 64-bit integer (torch's seed range), got {seed!r}")
    name, kwargs = estimator.name, estimator.kwargs
    probe = estimators.get(name, **kwargs)
    fixtures = _checks.fixtures() if fixtures is None else dict(fixtures)
    plan = _checks._plan(name, kwargs, probe, fixtures)  # the plan run_checks makes
    if not plan:
        raise SpecError(f"cannot check {estimator.text!r}: estimator {name!r} accepts none of the check fixtures "
                        f"({', '.join(fixtures)})")
    _checks._check_resources(name, kwargs, plan, n, None)  # TooManyDraws before any check, as run_checks
    accepted = {(fixture_name, K): tested for fixture_name, _, K, tested in plan}
    out: List[Check] = []
    for fixture_name, fixture in fixtures.items():
        for K in fixture.particles:
            if (fixture_name, K) in accepted:
                tested, refused = accepted[fixture_name, K], None
            else:
                built = fixture.make((0,))
                try:
                    estimators.get(name, **kwargs).check(built, K)
                    refused = "not in estibench check's plan"  # cannot happen: _plan accepts what check accepts
                except IncompatibleError as err:
                    refused = f"{fixture_name}, K = {K}: refused: {str(err).splitlines()[0]}"
                tested = bool(probe.unbiased and (built.latent.enumerable or
                                                  CLOSED_FORM_GAUSSIAN in capabilities(built)))
            kinds = [k for k in KINDS if k != "unbiased" or tested]
            out += [Check(estimator, kind, fixture_name, K, fixture, n, float(alpha), int(seed), refused)
                    for kind in kinds]
    return out


def check_estimator(spec: Spec, options: Optional[dict] = None, fixtures: Optional[Dict[str, Fixture]] = None,
                    n: Optional[int] = None, *, alpha: float = FAMILY_ALPHA, seed: int = 0) -> List[Result]:
    """Run every check of :func:`estimator_checks` (refused fixtures are left out, as ``estibench check`` leaves
    them).  Returns the rows when every check passes; else raises one ``AssertionError`` whose first line counts the
    failures and whose next lines are the failed rows, one line each."""
    made = estimator_checks(spec, options, fixtures, n, alpha=alpha, seed=seed)
    results = [check.result() for check in made if check.refused is None]
    failed = [failure_line(made[0].estimator, r) for r in results if not r.passed]
    if failed:
        raise AssertionError(f"{len(failed)} of {len(results)} checks of {made[0].estimator.text} failed:\n"
                             + "\n".join(failed))
    return results


def parametrize_with_checks(specs: Union[Spec, Sequence[Spec]], fixtures: Optional[Dict[str, Fixture]] = None,
                            n: Optional[int] = None, *, alpha: float = FAMILY_ALPHA, seed: int = 0):
    """A ``pytest.mark.parametrize("estimator, check", ...)`` decorator: one case per :class:`Check` of every spec
    (:func:`estimator_checks`), ``estimator`` its :class:`EstimatorSpec` and ``check`` the check to call, with ids such
    as ``ConstantBaseline[baseline=-50.0]-contract-gmm-K2``.  The checks are made here (at collection), so a spec
    that cannot be checked is one :class:`SpecError` there."""
    import pytest
    if isinstance(specs, (str, type)) or (isinstance(specs, tuple) and len(specs) == 2 and isinstance(specs[1], dict)):
        specs = [specs]
    made = [check for spec in specs for check in estimator_checks(spec, None, fixtures, n, alpha=alpha, seed=seed)]
    return pytest.mark.parametrize("estimator, check", [pytest.param(c.estimator, c, id=c.name) for c in made])


# -- reading a spec ---------------------------------------------------------------------------------------------------

def resolve(spec: Spec, options: Optional[dict] = None) -> EstimatorSpec:
    """The :class:`EstimatorSpec` of a spec (see the module docstring); ``options`` join those in its brackets (one
    given in both places with different values is refused).  One :class:`SpecError` for anything that cannot be
    checked, the estimator built once with its options to find out."""
    shown = spec if isinstance(spec, str) else getattr(spec, "__qualname__", repr(spec))
    try:
        if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
            spec, options = spec[0], _join(dict(spec[1]), options, spec[0])
            shown = spec if isinstance(spec, str) else getattr(spec, "__qualname__", repr(spec))
        if isinstance(spec, str):
            specs = parse_estimators(spec)
            if len(specs) != 1:
                raise UsageError(f"check one estimator at a time, got {spec!r}")
            name, found = specs[0]
            found = _join(found, options, spec)
        elif isinstance(spec, type):
            name, found = _class_name(spec), dict(options or {})
        else:
            raise UsageError(f"an estimator spec is a name, package.module:Class (options in brackets), an "
                             f"Estimator subclass or a pair (spec, options); got {spec!r}")
        estimators.get(name, **found)  # an unknown name, a bad option or value fails here, in one line
    except (UsageError, UnknownNameError, TypeError, ValueError) as err:  # TypeError: an option it does not take
        raise SpecError(f"cannot check {shown!r}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") \
            from None
    return EstimatorSpec(name, tuple(found.items()))


def _join(found: dict, options: Optional[dict], spec) -> dict:
    for key, value in (options or {}).items():
        if key in found and found[key] != value:
            raise UsageError(f"option {key!r} is given twice for {spec!r}: {found[key]!r} and {value!r}")
        found[key] = value
    return found


def _class_name(cls: type) -> str:
    """The registry name an ``Estimator`` subclass is checked under: its own registry name, else
    ``module:qualname`` (imported as ``estibench check`` would import it; a class that path does not reach is
    registered under it in this process, replacing an earlier class of that path)."""
    if not issubclass(cls, Estimator):
        raise UsageError(f"{cls.__module__}.{cls.__qualname__} is not an estimator (not a subclass of "
                         f"estibench.estimators.Estimator)")
    registry = estimators.REGISTRY
    own = cls.__dict__.get("registry_name")
    if own and registry.known(own) is cls:
        return own
    path = f"{cls.__module__}:{cls.__qualname__}"
    known = registry.known(path)
    if known is cls or (known is not None and known.__bases__ == (cls,)):  # the registry's own subclass of it
        return path
    if known is None and "<locals>" not in path:
        try:
            if import_path(path) is cls:
                return path
        except UnknownNameError:
            pass
    if known is not None:
        registry.unregister(path)
    if own:  # registered under another name: a subclass of its own for this one, as the registry makes
        cls = type(cls.__name__, (cls,), {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                          "__doc__": cls.__doc__})
    registry.register(path)(cls)
    return path


def _bracket(options) -> str:
    items = [f"{key}={_value(value)}" for key, value in options]
    return f"[{','.join(items)}]" if items else ""


def _value(value) -> str:
    """An option value as the option grammar reads it back: a bare word as is, anything else as its repr."""
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) and value not in ("True", "False",
                                                                                                 "None"):
        return value
    return repr(value)


def _skip(reason: str) -> None:
    if "pytest" in sys.modules:
        import pytest
        pytest.skip(reason)
    import unittest
    raise unittest.SkipTest(reason)
