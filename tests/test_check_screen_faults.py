"""``check`` and ``screen`` against input that cannot work and faults of the machine (issue 26, items 7, 8, 12):
too few draws for the bias test's stated false-alarm rate, more draws or particles than fit in memory, a seed
torch cannot take, a reference run that diverges, estimators whose draws are not finite, a full disk under
``--out``.  Each is one line on stderr and an exit status (2 for bad input, 1 for a full disk), never a traceback,
and refusals come before any work: the memory tests replace the work by a function that fails the test if called
and fix the memory available (``checks.available_memory``), so they never allocate what they refuse.  The full disk
is a faked ENOSPC (as in ``tests/test_reliability.py``)."""
import errno
import os

import pandas as pd
import pytest
import torch

from estibench.cli import screen
from estibench.harness import checks
from estibench.cli import main

#: the smallest screen: GMM, one estimator, points at steps 0 and 2, a handful of draws
TINY = ["--model", "gmm", "--estimators", "rloo", "--draws", "4", "--points", "2", "--steps", "2", "--bootstrap",
        "10", "--batch-size", "4"]


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def not_called(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} ran before the refusal")
    return fail


# -- item 7: too few draws for the stated false-alarm rate ----------------------------------------------------
def test_check_refuses_fewer_draws_than_its_false_alarm_rate_needs(monkeypatch, capsys):
    """``check reinforce --draws 20`` failed an unbiased estimator (the studentised mean of 20 skewed draws is far
    from t: 52 % false alarms at α = 1e-3); now it is refused before any check, naming the minimum."""
    monkeypatch.setattr(checks, "contract", not_called("the contract check"))
    assert main(["check", "reinforce", "--draws", "20"]) == 2
    err = one_error_line(capsys)
    assert f"--draws must be at least {checks.MIN_DRAWS}" in err and "false-alarm rate" in err


def test_screen_does_not_run_the_bias_test_on_too_few_draws_and_says_so(capsys):
    """``screen --draws 4`` flagged "bias detected" for unbiased estimators; below checks.MIN_DRAWS draws the bias test
    is not run ("not tested"), the relative bias is still estimated, and the caveats say why."""
    assert main(["screen", *TINY]) == 0
    out = capsys.readouterr().out
    assert "not tested" in out and "of 2 points" not in out
    assert f"bias test: not run at 4 draws per point (fewer than {checks.MIN_DRAWS:,}" in out


# -- item 8: more draws than fit in memory -------------------------------------------------------------------------
def test_check_refuses_draws_that_cannot_fit_in_memory_before_any_work(monkeypatch, capsys):
    """``check --draws 10⁹`` ran for over 10 minutes at 8 GB; with 8 GB available it is refused at once, with the size
    it would need and the most draws that fit."""
    monkeypatch.setattr(checks, "available_memory", lambda: 8 * 10 ** 9, raising=False)
    monkeypatch.setattr(checks, "contract", not_called("the contract check"))
    monkeypatch.setattr(checks, "draws", not_called("drawing"))
    assert main(["check", "reinforce", "--draws", str(10 ** 9)]) == 2
    err = one_error_line(capsys)
    assert "1,000,000,000 draws do not fit in memory" in err and "8 GB is available" in err
    most = int(err.split("use at most ")[1].split()[0].replace(",", ""))
    assert checks.draws_memory(most, 644) <= 8 * 10 ** 9 < checks.draws_memory(10 ** 9, 644)


def test_more_draws_than_one_pass_are_drawn_in_passes_after_a_time_estimate(monkeypatch):
    """More draws than checks.DRAW_CHUNK (set to 700 here): the exact-gradient test is announced with its time and
    memory (``note``, from 50 timed draws), and its 2,000 draws come in passes of 700, 700 and 600 replicas, so the
    replicated model's memory does not grow with n; RLOO passes."""
    monkeypatch.setattr(checks, "DRAW_CHUNK", 700)
    passes, real = [], checks.gradient_draws

    def spy(model, est, xs, K, n, which="guide"):
        passes.append(model.replicates)
        return real(model, est, xs, K, n, which=which)
    monkeypatch.setattr(checks, "gradient_draws", spy)
    fixture = checks.FIXTURES["gmm"]
    one = {"gmm": checks.Fixture(fixture.make, fixture.data, (2,), fixture.draws)}
    notes = []
    results = checks.run_checks("rloo", fixtures=one, n=checks.MIN_DRAWS, note=notes.append)
    assert len(notes) == 1 and "exact-gradient tests take about" in notes[0] and "peak memory" in notes[0]
    assert passes == [50, 700, 700, 600]  # the timed probe, then the test's passes
    assert [r.check for r in results][-1] == f"unbiased φ-gradient (n = {checks.MIN_DRAWS})"
    assert all(r.passed for r in results), results


@pytest.mark.parametrize("flag,value", [("--particles", 10 ** 8), ("--draws", 10 ** 6)])
def test_screen_refuses_particles_or_draws_that_cannot_fit_in_memory_before_any_work(flag, value, monkeypatch,
                                                                                       capsys):
    """``screen --particles 10⁸`` (batch 24, the default) ran out of memory with a traceback; ``--draws 10⁶`` would
    need a 10⁶ × 10⁶ bootstrap Gram matrix.  With 8 GB available both are refused before any estimator is bound."""
    monkeypatch.setattr(checks, "available_memory", lambda: 8 * 10 ** 9, raising=False)
    monkeypatch.setattr(screen, "bind", not_called("binding the estimators"))
    assert main(["screen", *TINY, "--batch-size", "24", flag, str(value)]) == 2  # the later flags win
    err = one_error_line(capsys)
    assert "not enough memory" in err and flag in err and "8 GB is available" in err


def test_an_allocation_that_fails_while_screening_is_one_line(monkeypatch, capsys):
    """Memory that runs out all the same (the estimate passed) is one line, exit 2, naming what to lower."""
    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                           "you tried to allocate 80000000000 bytes.")
    monkeypatch.setattr(screen, "measure_frozen", no_memory)
    assert main(["screen", *TINY]) == 2
    err = one_error_line(capsys)
    assert "out of memory measuring rloo at point 1" in err and "lower --particles" in err


# -- item 12: screen's other faults -------------------------------------------------------------------------------
def test_screen_refuses_a_seed_torch_cannot_take(capsys):
    assert main(["screen", *TINY, "--seed", str(10 ** 23)]) == 2
    assert "--seed must be a 64-bit integer" in one_error_line(capsys)


def test_check_refuses_a_seed_torch_cannot_take(capsys):
    assert main(["check", "reinforce", "--seed", str(10 ** 23)]) == 2
    assert "--seed must be a 64-bit integer" in one_error_line(capsys)


def test_a_diverging_reference_run_is_one_line(capsys):
    """``--lr 1e30``: the reference run's parameters overflow (linear_gaussian: its Normal refuses NaN at step 2; the
    GMM with RELAX as reference: a non-finite objective).  One line naming the step and --lr, exit 2."""
    assert main(["screen", "--model", "linear_gaussian", "--estimators", "rloo", "--draws", "4", "--points", "2",
                 "--steps", "3", "--bootstrap", "10", "--batch-size", "4", "--lr", "1e30"]) == 2
    err = one_error_line(capsys)
    assert "the reference run (rloo, Adam lr 1e+30)" in err and "at step 2" in err and "lower --lr" in err
    assert main(["screen", *TINY[:3], "relax", *TINY[4:], "--lr", "1e30"]) == 2
    assert "diverged at step 2: non-finite objective or gradients" in one_error_line(capsys)


def test_an_estimator_whose_draws_are_not_finite_at_a_point_is_a_blank_row_not_a_crash(tmp_path, capsys):
    """``--lr 1e30`` with RLOO as reference leaves the GMM's parameters finite (about 1e30) but RELAX's draws NaN at
    the second point: its unbiased group was all NaN there and ranking ended in "idxmin … all NA".  Now its row is
    blank there, it leads nowhere, and the caveats say which estimator could not be measured where and why."""
    out = tmp_path / "screen"
    assert main(["screen", "--model", "gmm", "--estimators", "relax", "--reference", "rloo", "--draws", "4",
                 "--points", "2", "--steps", "3", "--bootstrap", "10", "--batch-size", "4", "--lr", "1e30",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "not measured at some points" in text and "relax: 1 of 2 point(s): 4 of 4 draws not finite" in text
    frame = pd.read_csv(out / "screen.csv")
    assert frame.variance.isna().tolist() == [False, True]


def test_a_full_disk_under_out_is_one_line_and_leaves_the_old_files(tmp_path, monkeypatch, capsys):
    """A full disk while writing screen.csv (pandas writes part of it, then ENOSPC): one line, exit 1, the screen.csv
    and screen.md that were there as they were (not a truncated 0-byte file), no temporary file left; a full disk at
    screen.md's rename: one line, exit 1, screen.md as it was, screen.csv whole."""
    out = tmp_path / "screen"
    out.mkdir()
    (out / "screen.csv").write_text("old csv\n")
    (out / "screen.md").write_text("old md\n")

    def full(self, path, *args, **kwargs):
        with open(path, "w") as fh:
            fh.write("partial,")
        raise OSError(errno.ENOSPC, "No space left on device")

    real_replace = os.replace

    def full_at_md(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) == "screen.md":
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(dst))
        return real_replace(src, dst, *args, **kwargs)

    for target in ("csv", "md"):
        with monkeypatch.context() as m:
            if target == "csv":
                m.setattr(pd.DataFrame, "to_csv", full)
            else:
                m.setattr(os, "replace", full_at_md)
            assert main(["screen", *TINY, "--out", str(out)]) == 1
        err = one_error_line(capsys)
        assert f"the disk holding {out} is full" in err, err
        assert (out / "screen.md").read_text() == "old md\n" and sorted(os.listdir(out)) == ["screen.csv", "screen.md"]
        if target == "csv":  # the failed write left both files as they were
            assert (out / "screen.csv").read_text() == "old csv\n"
        else:  # screen.csv had been moved into place, whole, before screen.md's rename failed
            assert list(pd.read_csv(out / "screen.csv").estimator) == ["rloo", "rloo"]
