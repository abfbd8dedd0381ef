"""Bring your own estimator or model (issue 9 §5): ``package.module:Class`` names and entry points
run through the CLI, the workers, the store and the reports like built-ins, with a stable label;
``estibench check`` verifies an estimator before its numbers are trusted."""
import re
import os
import subprocess
import sys
import textwrap

import pandas as pd

from estibench import cli
from estibench.harness.checks import FIXTURES, MIN_DRAWS, run_checks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = "estibench.examples.constant_baseline:ConstantBaseline[baseline=-50.0]"
#: the in-process checks' fixtures: the GMM and one tiny SBN (the CLI test above runs every fixture)
SMALL_FIXTURES = {name: FIXTURES[name] for name in ("gmm", "sbn_tiny-linear1")}


def checks_status(results) -> int:
    """``estibench check``'s exit status for these results: 0 when every check passed, else 1."""
    return 0 if all(r.passed for r in results) else 1


def run(*args, cwd=ROOT, env=None, timeout=600):
    return subprocess.run([sys.executable, os.path.join(ROOT, "run_all.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_check_passes_a_correct_estimator_of_your_own():
    """ConstantBaseline (examples/): every contract, independence and state-under-measurement check and every
    exact-gradient test passes, with the statistics printed (seed 0, n = 2000 draws per test, α = 1e-3 per
    test)."""
    done = run("check", GOOD)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "seed 0, false-alarm rate α = 0.001" in out and "unbiased φ-gradient (n = 2000)" in out
    for model in ("gmm", "sbn_tiny-linear1", "sbn_tiny-linear2"):
        assert model in out
    assert "state under measurement" in out
    passed = re.search(r"(\d+) of (\d+) checks passed$", out.strip())  # as many checks as the registered models ask
    assert "FAIL" not in out and passed and passed[1] == passed[2] and int(passed[1]) >= 24, out[-500:]


def test_check_catches_a_biased_estimator_that_claims_to_be_unbiased():
    """SampleBaseline's "baseline" is computed from its own sample: its contract holds, its exact-gradient
    tests fail (measured at n = 2000: max |z| 55–86 on the SBNs, 3,228–8,595 on the GMM, against thresholds
    4.58–4.82), exit status 1.  In process, on the GMM and one tiny SBN, at the fewest draws ``check`` accepts."""
    results = run_checks("estibench.examples.constant_baseline:SampleBaseline", fixtures=SMALL_FIXTURES, n=MIN_DRAWS)
    exact = [r for r in results if r.check.startswith("unbiased φ-gradient")]
    assert exact and not any(r.passed for r in exact), exact
    assert all(r.passed for r in results if r.check == "contract")
    assert checks_status(results) == 1


def test_bad_check_input_is_one_line_and_status_2(capsys):
    done = run("check", "estibench.examples.nothere:X")  # once as a user types it
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    for spec in ("nope", "estibench.examples.nothere:X", "os.path:join", "ww,vimco", "reinforce[bogus=1]"):
        capsys.readouterr()
        assert cli.main(["check", spec]) == 2, spec
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, (spec, err)


def test_an_own_estimator_and_model_run_through_the_sweep_store_and_report(tmp_path):
    """--estimators and --model with package.module:Class names, two loky workers (which resolve the
    names themselves), the store, metrics.csv and the report; a second run finds every cell done."""
    out = str(tmp_path / "mine")
    args = ["--model", "estibench.examples.uniform_gmm:UniformGMM", "--estimators", f"{GOOD},ww", "--particles", "2",
            "--seeds", "2", "--iterations", "10", "--eval-every", "5", "--jobs", "2", "--device", "cpu",
            "--out", out]
    first = run(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    table = pd.read_csv(os.path.join(out, "metrics.csv"))
    assert set(table.label) == {GOOD, "ww"} and set(table.model) == {"estibench.examples.uniform_gmm:UniformGMM"}
    assert set(table.estimator) == {"estibench.examples.constant_baseline:ConstantBaseline", "ww"}
    report = open(os.path.join(out, "gmm", "report.md")).read()
    assert GOOD in report
    again = run(*args)
    assert again.returncode == 0 and "2 already done, 0 to run" in again.stdout, again.stdout
    wrong = run("--suite", "sbn", "--model", "estibench.examples.uniform_gmm:UniformGMM", "--dry-run")
    assert wrong.returncode == 2 and "does not fit suite 'sbn'" in wrong.stderr


def test_entry_point_plugins_are_registered_under_their_name(tmp_path):
    """An installed package declaring ``[estibench.estimators]`` and ``[estibench.models]`` entry points
    (here: a .dist-info folder on PYTHONPATH) adds names to the registries, usable by the CLI."""
    site = tmp_path / "site"
    (site / "myplug-0.1.dist-info").mkdir(parents=True)
    (site / "myplug-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (site / "myplug-0.1.dist-info" / "entry_points.txt").write_text(
        "[estibench.estimators]\nmy_reinforce = myplug:MyReinforce\n\n[estibench.models]\nmy_gmm = myplug:MyGMM\n")
    (site / "myplug.py").write_text(textwrap.dedent('''
        from estibench.estimators.reinforce import Reinforce
        from estibench.models.gmm import GMM

        class MyReinforce(Reinforce):
            """REINFORCE for the IWAE bound (Le et al., Eq. 2), installed as a plugin."""

        class MyGMM(GMM):
            """The GMM of Le et al. §4.3, installed as a plugin."""
        '''))
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("from estibench import estimators, models; "
            "assert 'my_reinforce' in estimators.names() and 'my_gmm' in models.names(); "
            "print(estimators.get('my_reinforce').name)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "my_reinforce", done.stderr
    dry = run("--model", "my_gmm", "--estimators", "my_reinforce", "--particles", "2", "--dry-run", env=env)
    assert dry.returncode == 0 and "my_reinforce" in dry.stdout, dry.stderr


def test_check_fails_an_estimator_whose_state_moves_under_measurement():
    """LeakyEMABaseline (examples/ema_baseline.py) updates its baseline inside ``surrogate``: its exact-gradient
    tests pass (the baseline never depends on the current sample), its state-under-measurement checks fail with
    the changed buffer named, exit status 1; EMABaseline, which updates only when ``with_own`` is true, passes."""
    leaky = run_checks("estibench.examples.ema_baseline:LeakyEMABaseline", fixtures=SMALL_FIXTURES, n=MIN_DRAWS)
    rows = [r for r in leaky if r.check == "state under measurement"]
    assert rows and all(not r.passed and "changed its state: b" in r.detail for r in rows), rows
    assert all(r.passed for r in leaky if r.check.startswith("unbiased φ-gradient"))
    assert checks_status(leaky) == 1
    good = run_checks("estibench.examples.ema_baseline:EMABaseline", fixtures=SMALL_FIXTURES, n=MIN_DRAWS)
    assert checks_status(good) == 0, [r for r in good if not r.passed]
