"""``estibench screen``: a ranked table with intervals, a recommendation line stating its evidence, the caveats it
could not measure, and one-line refusals (exit status 2) before any work for bad input."""

import pandas as pd
import pytest

from estibench.harness.cli import main

FAST = ["--draws", "24", "--points", "2", "--steps", "4", "--bootstrap", "50", "--batch-size", "8"]


def test_screen_ranks_estimators_on_an_enumerable_model(tmp_path, capsys):
    out = tmp_path / "screen"
    assert main(["screen", "--model", "sbn_tiny", "--estimators", "reinforce,rloo,disarm,concrete",
                 "--out", str(out)] + FAST) == 0
    text = capsys.readouterr().out
    assert "Recommendation: " in text and "Not measured / caveats:" in text
    frame = pd.read_csv(out / "screen.csv")
    assert set(frame.estimator) == {"reinforce", "rloo", "disarm", "concrete"} and set(frame.point) == {0, 1}
    assert (frame.variance_lo <= frame.variance).all() and (frame.variance <= frame.variance_hi).all()
    assert frame.rel_bias.notna().all() and (frame.sec_per_draw > 0).all()
    # REINFORCE without a baseline is ranked last: its variance is orders of magnitude above the others'
    var = frame.groupby("estimator").variance.median()
    assert var["reinforce"] > 50 * var[["rloo", "disarm"]].max()
    recommended = text.split("Recommendation: ")[1].split(" ")[0]
    assert recommended in {"rloo", "disarm"}  # never the biased concrete, never REINFORCE
    md = (out / "screen.md").read_text()
    assert "Recommendation" in md and "| estimator" in md.replace("|  ", "| ")


def test_screen_says_what_it_could_not_measure_on_a_model_of_your_own(capsys):
    """A plugin model (examples/uniform_gmm.py) by import path; 'all' estimators: the refused ones are listed with
    their reasons; the GMM is enumerable, so bias is measured."""
    assert main(["screen", "--model", "examples.uniform_gmm:UniformGMM", "--estimators", "reinforce,rloo,iwae,arm"]
                + FAST) == 0
    text = capsys.readouterr().out
    assert "2 estimator(s) do not fit" in text and "iwae" in text and "arm" in text
    assert "bias: not measured" not in text


@pytest.mark.parametrize("argv,message", [
    (["--model", "sbn_tinyy"], "did you mean"),
    (["--model", "sbn_tiny", "--estimators", "rlooo"], "did you mean"),
    (["--model", "sbn_tiny", "--draws", "2"], "--draws must be at least 3"),
    (["--model", "sbn_tiny", "--points", "3", "--steps", "1"], "--steps"),
    (["--model", "sbn_tiny", "--estimators", "iwae"], "no estimator fits"),
    (["--model", "sbn_tiny", "--reference", "iwae"], "--reference"),
    (["--model", "nowhere.module:Model"], "cannot import"),
    (["--model", "sbn_tiny", "--draws", "many"], "invalid int value"),
    ([], "required: --model"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    try:
        code = main(["screen"] + argv)
    except SystemExit as stop:  # argparse's own errors (a value of the wrong type, a missing flag)
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_the_gram_bootstrap_is_the_direct_one():
    """The O(n²)-per-resample bootstrap of the mean variance equals resampling the draws directly, rescaled by
    n/(n − 1) (seed 0, 50 resamples of 30 draws of a 7-coordinate vector with unequal scales)."""
    import numpy as np
    import torch
    from estibench.harness.screen import _bootstrap_var
    torch.manual_seed(0)
    x = torch.randn(30, 7) * torch.arange(1, 8)
    point, lo, hi, stats = _bootstrap_var(x, 50, np.random.default_rng(0))
    gen = np.random.default_rng(0)
    d = x.double().numpy()
    direct = np.array([d[gen.integers(0, 30, 30)].var(0, ddof=1).mean() for _ in range(50)]) * 30 / 29
    assert np.allclose(stats, direct, rtol=1e-12) and abs(point - float(x.double().var(0).mean())) < 1e-9
    assert lo <= point <= hi
