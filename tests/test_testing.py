"""``estibench.testing``: ``estibench check``'s checks as cases of a plug-in author's own pytest suite (scikit-learn's
``parametrize_with_checks``), with ``check``'s statistics, verdicts and messages.  In process, on the fixtures of
tests/test_plugins.py (the GMM and one tiny SBN) at the fewest draws ``check`` accepts."""
import os
import subprocess
import sys

import pytest

from estibench import estimators
from estibench.harness.checks import FIXTURES, MIN_DRAWS, run_checks
from estibench.testing import (SpecError, check_estimator, estimator_checks, failure_line, parametrize_with_checks,
                               resolve)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = "estibench.examples.constant_baseline:ConstantBaseline[baseline=-50.0]"
LEAKY = "estibench.examples.ema_baseline:LeakyEMABaseline"
#: the in-process checks' fixtures, as tests/test_plugins.py's: the GMM (K = 2, 5) and one tiny SBN (K = 1, 2)
SMALL_FIXTURES = {name: FIXTURES[name] for name in ("gmm", "sbn_tiny-linear1")}


@parametrize_with_checks([GOOD], fixtures=SMALL_FIXTURES, n=MIN_DRAWS)
def test_a_correct_estimator_passes_every_check(estimator, check):
    """ConstantBaseline: 16 cases (4 kinds × 2 fixtures × 2 particle counts), each passing."""
    check()


def test_the_cases_are_named_and_ordered_as_checks_table():
    made = estimator_checks(GOOD, fixtures=SMALL_FIXTURES, n=MIN_DRAWS)
    names = [c.name for c in made]
    assert names[:4] == [f"ConstantBaseline[baseline=-50.0]-{kind}-gmm-K2"
                         for kind in ("contract", "independence", "measurement_state", "unbiased")]
    assert len(names) == len(set(names)) == 16
    assert names[-1] == "ConstantBaseline[baseline=-50.0]-unbiased-sbn_tiny-linear1-K2"
    mark = parametrize_with_checks([GOOD], fixtures=SMALL_FIXTURES, n=MIN_DRAWS).mark
    assert mark.args[0] == "estimator, check" and [p.id for p in mark.args[1]] == names
    assert all(str(p.values[0]) == "ConstantBaseline[baseline=-50.0]" and p.values[0].text == GOOD
               for p in mark.args[1])


def test_check_estimator_names_the_failing_checks_and_agrees_with_run_checks():
    """LeakyEMABaseline moves its baseline under measurement: check_estimator raises one AssertionError whose lines are
    exactly the failed rows of run_checks on the same fixtures (its 4 state-under-measurement rows), and every check's
    row — verdict, statistic, threshold, detail — equals run_checks's."""
    with pytest.raises(AssertionError) as caught:
        check_estimator(LEAKY, fixtures=SMALL_FIXTURES, n=MIN_DRAWS)
    message = str(caught.value).splitlines()
    assert message[0] == f"4 of 16 checks of {LEAKY} failed:", message
    assert all("state under measurement: FAIL" in line and "changed its state: b" in line for line in message[1:])
    expected = run_checks(LEAKY, fixtures=SMALL_FIXTURES, n=MIN_DRAWS)
    spec = resolve(LEAKY)
    assert message[1:] == [failure_line(spec, r) for r in expected if not r.passed]
    made = estimator_checks(LEAKY, fixtures={"gmm": SMALL_FIXTURES["gmm"]}, n=MIN_DRAWS)
    rows = [c.result() for c in made]
    assert rows == [r for r in expected if r.model == "gmm"], rows
    failing = [c for c, r in zip(made, rows) if not r.passed]
    with pytest.raises(AssertionError, match="gmm, K = 2, state under measurement: FAIL"):
        failing[0]()


def test_a_refused_fixture_skips_with_the_refusal():
    """rebar takes Bernoulli latents only: its GMM cases skip, naming the refusal; the SBN's are made to run."""
    made = estimator_checks("rebar", fixtures=SMALL_FIXTURES)
    gmm = [c for c in made if c.fixture == "gmm"]
    assert gmm and all(c.refused and "does not support categorical latents" in c.refused for c in gmm)
    assert all(c.refused is None for c in made if c.fixture != "gmm")
    with pytest.raises(pytest.skip.Exception, match="gmm, K = 2: refused"):
        gmm[0]()


def test_a_spec_that_cannot_be_checked_is_one_clear_error():
    for spec in ("nope", "estibench.examples.nothere:X", "os.path:join", "ww,vimco", "reinforce[bogus=1]", int, 3):
        with pytest.raises(SpecError) as caught:
            parametrize_with_checks([spec], fixtures=SMALL_FIXTURES)
        text = str(caught.value)
        assert text.startswith("cannot check ") and "\n" not in text and caught.value.__cause__ is None, text
    with pytest.raises(SpecError, match="unknown estimator 'nope'"):
        check_estimator("nope")
    with pytest.raises(ValueError, match=f"at least {MIN_DRAWS}"):
        estimator_checks(GOOD, fixtures=SMALL_FIXTURES, n=MIN_DRAWS - 1)


def test_a_class_is_a_spec_too():
    """An Estimator subclass, with options as a pair: an importable one by its module:qualname, one defined here (not
    importable by that path) registered under it for this process."""
    from estibench.examples.constant_baseline import ConstantBaseline
    spec = resolve((ConstantBaseline, {"baseline": -50.0}))
    assert spec.text == GOOD and spec.label == "ConstantBaseline[baseline=-50.0]"

    class Local(ConstantBaseline):
        """ConstantBaseline, defined inside a test."""

    spec = resolve((Local, {"baseline": -50.0}))
    try:
        assert spec.name.endswith("<locals>.Local") and spec.label == "Local[baseline=-50.0]"
        assert isinstance(estimators.get(spec.name, baseline=-50.0), Local)
        contract = estimator_checks((Local, {"baseline": -50.0}), fixtures={"gmm": SMALL_FIXTURES["gmm"]})[0]
        assert contract.kind == "contract"
        contract()
    finally:
        estimators.REGISTRY.unregister(spec.name)


def test_it_imports_without_pytest():
    """``import estibench; estibench.testing`` (the package's lazy attribute) with pytest not importable."""
    code = ("import sys; sys.modules['pytest'] = None; import estibench; attribute = estibench.testing; "
            "import estibench.testing; assert attribute is estibench.testing and attribute.check_estimator")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
