"""The gradient basket (harness/basket.py, ``--basket``): every basket estimator measured at the parameters of
the cell's own trajectory, that trajectory unchanged by the measuring, the figure and table built from the
stored rows, and bad basket input refused with one line before any work."""
import os

import pandas as pd
import pytest

from estibench.cli import main
from estibench.harness.runner import Cell, train_cell
from estibench.studies import TASKS
from estibench.reports import basket as basket_report

OPTS = {"eval_points": 20, "test_points": 20, "final_particles": (5,), "grad_samples": 4}


def _cell(**extra):
    return Cell(study="sbn", model="sbn_tiny", estimator="rloo", particles=2, seeds=(0, 1), iterations=4,
                eval_every=2, batch_size=8, study_options={**OPTS, **extra})


@pytest.fixture(scope="module")
def runs():
    plain = train_cell(_cell(), TASKS["sbn"])
    with_basket = train_cell(_cell(basket=("reinforce", "disarm", "vimco", "concrete[relaxation=mass]"),
                                   basket_samples=6), TASKS["sbn"])
    return plain, with_basket


def test_the_basket_does_not_change_the_reference_trajectory(runs):
    plain, with_basket = runs
    keep = lambda rows: sorted((s, i, m, v) for s, i, m, v in rows  # noqa: E731
                               if not m.startswith("basket_") and m not in ("sec_per_iter", "peak_memory_mb"))
    assert keep(plain.rows) == keep(with_basket.rows)  # forked random stream: same training, bit for bit


def test_every_member_and_the_reference_are_measured_at_every_evaluation(runs):
    _, with_basket = runs
    rows = pd.DataFrame(with_basket.rows, columns=["seed", "iteration", "metric", "value"])
    logvar = rows[rows.metric.str.startswith("basket_logvar")]
    members = {m[len("basket_logvar[e="):-1] for m in logvar.metric}
    assert members == {"rloo", "reinforce", "disarm", "vimco", "concrete[relaxation=mass]"}
    assert set(logvar.iteration) == {0, 2, 4} and logvar.value.notna().all()
    bias = rows[rows.metric.str.startswith("basket_rel_bias")]  # sbn_tiny is enumerable
    assert len(bias) == len(logvar) and (bias.value >= 0).all()
    # the REINFORCE line lies far above the leave-one-out and antithetic ones at the same parameters
    mean = logvar.groupby("metric").value.mean()
    assert mean["basket_logvar[e=reinforce]"] > mean["basket_logvar[e=rloo]"] + 2
    assert mean["basket_logvar[e=reinforce]"] > mean["basket_logvar[e=disarm]"] + 2


def test_report_figure_and_table(runs, tmp_path):
    _, with_basket = runs
    t = pd.DataFrame(with_basket.rows, columns=["seed", "iteration", "metric", "value"]).assign(
        model="sbn_tiny[arch=linear1]", label="rloo", particles=2)
    table = basket_report.basket_table(t)
    assert set(table.estimator) == {"rloo", "reinforce", "disarm", "vimco", "concrete[relaxation=mass]"}
    assert table.loc[table.estimator == "rloo", "Δ vs reference"].item() == ""
    assert table.loc[table.estimator == "concrete[relaxation=mass]", "unbiased (declared)"].item() == "no"
    path = basket_report.figure_basket(t, str(tmp_path / "basket.png"))
    assert os.path.getsize(path) > 10_000
    assert [s.name for s in basket_report.sections(t)] == ["fig_basket", "basket_table"]
    assert basket_report.sections(t[~t.metric.str.startswith("basket_")]) == []


def test_all_skips_what_does_not_fit_and_says_why():
    from estibench.harness.basket import members
    from estibench.harness.runner import build
    cell = _cell(basket=("all",))
    model, est = build(cell)
    chosen, skipped = members(("all",), model, 2, est, "rloo")
    assert next(iter(chosen)) == "rloo" and "disarm" in chosen and "reinforce" in chosen
    assert "gmm" not in chosen and "iwae" in skipped and "normal" in skipped["iwae"]


@pytest.mark.parametrize("flags,message", [
    (["--basket", "reinforc"], "did you mean reinforce"),
    (["--basket", "gumbel_st[temperature=1]"], "--basket"),
    (["--basket", "reinforce", "--basket-samples", "1"], "at least 2"),
    (["--basket-samples", "5"], "needs --basket"),
])
def test_bad_basket_input_is_refused_with_one_line(flags, message, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--estimators", "ww", "--particles", "2", "--iterations", "2", "--out", str(out)] + flags)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_the_report_lists_the_members_a_cell_did_not_measure():
    """A --basket member that fits only some cells (vimco needs K ≥ 2) is named, per cell, in the basket report:
    read from the stored cells' study options and metric names alone."""
    opts = '{"basket": ["reinforce", "vimco"]}'
    rows = [(K, m, s) for K, members in ((1, ("ww", "reinforce")), (2, ("ww", "reinforce", "vimco")))
            for m in members for s in (0, 1)]
    t = pd.DataFrame([{"model": "gmm", "label": "ww", "particles": K, "seed": s, "iteration": 0,
                       "metric": f"basket_logvar[e={m}]", "value": -1.0 - s, "study_options": opts}
                      for K, m, s in rows])
    skipped = basket_report.not_measured(t)
    assert skipped[["model", "reference", "K", "estimator"]].values.tolist() == [["gmm", "ww", 1, "vimco"]]
    assert "K = 1" in skipped.why.item() and "measured at K = 2" in skipped.why.item()
    assert [s.name for s in basket_report.sections(t)][-1] == "basket_not_measured"
    everything = t.assign(study_options='{"basket": ["all"]}')  # 'all': every estimator that fits, none missed
    assert basket_report.not_measured(everything).empty
    assert "basket_not_measured" not in [s.name for s in basket_report.sections(everything)]
