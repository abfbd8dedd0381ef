"""What the index's leaderboards show (issue 25 §2 and §4): shared ranks where the seeds do not separate
estimators, display names, short model labels with the full setting beside them, measurement-only options that
neither split nor double-count a cell, and each published value's budget on its row.  Built from a small SBN
store (the study with a published column); the rank statistics themselves: tests/test_intervals.py."""
import re

import numpy as np
import pytest

from estibench.harness.runner import Cell
from estibench.harness.store import Store
from estibench.reports import leaderboard as lb
from estibench import studies
from estibench.reports import index
from estibench.reports import tables as tb

METRIC = "test_ll[K=100]"
#: final test_ll per seed (0, 1, 2): REBAR and Concrete overlap (Welch p ≈ 0.06 before any correction)
VALUES = {"rebar": [-153.0, -153.5, -152.8], "concrete": [-159.6, -162.5, -156.6], "rloo": [-155.0, -154.0, -156.0]}
BASKET = {"basket": ["all"], "basket_samples": 20}


def sbn_cell(estimator, arch="nonlinear", particles=1, study_options=None, **options):
    return Cell(study="sbn", model="sbn", estimator=estimator, particles=particles, seeds=(0, 1, 2), iterations=1000,
                eval_every=500, batch_size=24, model_options={"arch": arch, "dataset": "mnist5k-bern0"},
                estimator_options=options, study_options=dict(study_options or {}), device="cpu")


def rows(values, extra=()):
    out = [(s, it, METRIC, v + (it - 1000) / 100) for s, v in enumerate(values) for it in (500, 1000)]
    return out + [(s, 1000, m, -1.0) for s in range(len(values)) for m in extra]


@pytest.fixture(scope="module")
def store_tables(tmp_path_factory):
    store = Store(str(tmp_path_factory.mktemp("sbn")))
    common = dict(wall_s=1.0, sec_per_iter=0.001, device="cpu", machine="test", finished_at="2026-01-02T10:00:00+00:00")
    for arch, shift in (("nonlinear", 0.0), ("linear1", -20.0)):
        store.write_cell(sbn_cell("rebar", arch, variant="rebar_code"), rows(np.add(VALUES["rebar"], shift)), **common)
        store.write_cell(sbn_cell("concrete", arch), rows(np.add(VALUES["concrete"], shift)), **common)
    # RLOO at K = 2 twice: without and with the gradient basket, which only measures (same trajectory, same numbers)
    store.write_cell(sbn_cell("rloo", particles=2), rows(VALUES["rloo"]), **common)
    basket = ["basket_logvar[e=rloo]", "basket_logvar[e=disarm]"]
    store.write_cell(sbn_cell("rloo", particles=2, study_options=BASKET), rows(VALUES["rloo"], basket), **common)
    # ... and once more at another eval_every: a setting that does split cells
    other = sbn_cell("rloo", particles=2)
    other.eval_every = 250
    store.write_cell(other, rows(VALUES["rloo"]), **common)
    table, cells = store.table(), store.cells()
    store.close()
    return table, cells


def test_measurement_only_options_neither_split_nor_double_count(store_tables):
    """The basket cell and its twin share the label `rloo` (labelled by eval_every only, which does split), and
    their seeds count once: each (seed, metric) from the cell that measured more (the basket cell)."""
    raw, cells = store_tables
    table, cells = tb.separate_settings(raw, cells)
    labels = set(table.label[table.particles == 2])
    assert labels == {"rloo {eval_every=500}", "rloo {eval_every=250}"} and not any("basket" in l for l in cells.label)
    twins = cells[(cells.label == "rloo {eval_every=500}")]
    assert len(twins) == 2  # both cells stay in the cells table (they ran)
    basket_key = twins.key[twins.study_options.str.contains("basket")].item()
    final = table[(table.label == "rloo {eval_every=500}") & (table.metric == METRIC) & (table.iteration == 1000)]
    assert sorted(final.seed) == [0, 1, 2] and set(final.key) == {basket_key}
    assert (table.metric == "basket_logvar[e=disarm]").sum() == 3  # the basket's own rows are kept
    assert len(raw) - len(table) == 6  # exactly the twin's 3 seeds × 2 evaluations of test_ll were dropped
    board = lb.leaderboard(table, "sbn", studies.get("sbn").headline)
    assert board[board.K == 2].seeds.tolist() == [3, 3]  # not 6


def test_the_leaderboard_ranks_names_and_budgets(store_tables):
    table, cells = tb.separate_settings(*store_tables)
    board = lb.leaderboard(table, "sbn", studies.get("sbn").headline)
    # one budget for all our rows: said once, in the caption, not on every row
    assert list(board.columns) == ["model", "K", "rank", "estimator", "seeds", METRIC, "published",
                                   "published budget"]
    nonlinear = board[(board.model == "sbn[arch=nonlinear,dataset=mnist5k-bern0]") & (board.K == 1)]
    # display names, as the figures name them; the overlapping pair shares rank 1
    assert nonlinear.estimator.tolist() == ["REBAR[variant=rebar_code]", "Concrete"]
    assert nonlinear["rank"].tolist() == [1, 1]
    rebar = nonlinear.iloc[0]
    assert rebar.published == "-100.69 ± 0.08"  # DVAE++ Table 1, nonlinear
    assert rebar["published budget"] == "2M steps, static MNIST, 50k images"
    caption = lb.caption(studies.get("sbn").headline, board)
    assert "Our budget, every row beside a published value: 1k steps, mnist5k-bern0." in caption
    assert "Student-t interval for the mean" in caption and "n = 3 seeds" in caption
    assert "Welch t-test" in caption and "Holm" in caption and "α = 0.05" in caption and "shared rank" in caption


def test_the_index_names_models_by_what_differs(store_tables, tmp_path):
    """The index's leaderboard names a model by the settings that differ within its table, the full setting in the
    cell's tooltip and in a small table below (HTML and Markdown)."""
    table, _ = tb.separate_settings(*store_tables)
    tb.learn_estimators(table)
    text, md = index.index_leaderboards(str(tmp_path), table, ["sbn"], {"sbn": "sbn"})
    full = "sbn[arch=linear1,dataset=mnist5k-bern0]"
    board, below = text.replace('<span class="nw">', "").replace("</span>", "").split('<p class="caption">', 1)
    assert f'<td title="{full}">sbn[arch=linear1]</td>' in board
    assert "dataset=" not in re.sub(r' title="[^"]*"', "", board)  # the full settings only in tooltips
    assert "<td>sbn[arch=linear1]</td>" in below and f"<td>{full}</td>" in below  # the table below
    assert "| sbn[arch=linear1]" in "\n".join(md) and full in "\n".join(md)


def test_short_labels_keep_only_what_differs():
    rbm = ["rbm_vae[ais_chains=200,ais_steps=300,arch=elu,chains=200,gibbs_sweeps=10,groups=1,rbm_hidden=400]",
           "rbm_vae[ais_chains=200,ais_steps=300,arch=linear,chains=200,gibbs_sweeps=10,groups=1]",
           "rbm_vae[ais_chains=200,ais_steps=300,arch=linear,chains=200,gibbs_sweeps=10,groups=2]"]
    other = ["rbm_vae_tiny[arch=linear,groups=1]", "rbm_vae_tiny[arch=linear,groups=2]", "sbn[arch=linear1]", "gmm",
             "x[h=(1, 2),a=1]", "x[h=(1, 3),a=1]"]
    short = tb.short_labels(rbm + other + rbm[:1])  # a repeated label is one label
    assert short == {"rbm_vae[arch=elu,groups=1,rbm_hidden=400]": rbm[0], "rbm_vae[arch=linear,groups=1]": rbm[1],
                     "rbm_vae[arch=linear,groups=2]": rbm[2],
                     "rbm_vae_tiny[groups=1]": other[0], "rbm_vae_tiny[groups=2]": other[1],
                     "sbn": other[2], "gmm": "gmm", "x[h=(1, 2)]": other[4], "x[h=(1, 3)]": other[5]}
    assert max(map(len, short)) <= 41
