"""What a reader of a study page sees (issue 25, part 4): labels by the settings that differ, no empty columns, figures
whose lines are told apart and whose legends cover nothing, blurbs read from the store, one naming scheme, verdicts
only where there are enough points, the paper-budget reference beside a short GMM run, the dirty trees and the
numerics versions behind a page's cells.  Small synthetic stores and tables throughout."""
import json
import os
import re
import struct

import numpy as np
import pandas as pd
import pytest

from estibench import reports
from estibench.harness.runner import Cell, numerics_version
from estibench.harness.store import Store
from estibench.reports import generic, naming, plotstyle, render, summary
from estibench.studies.gmm import page as gmm
from estibench.reports import tables as tb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = ["ws", "ww", "dww", "vimco", "reinforce", "concrete", "relax"]
LATER = ["rloo", "indecater", "categorical_disarm", "unordered_set", "zgr", "gst", "reinmax"]
COMMON = dict(sec_per_iter=0.002, device="cpu", machine="x86_64, 2 CPUs")


# -- synthetic data ------------------------------------------------------------------------------
def gmm_table(estimators=PAPER + LATER, Ks=(2, 20), seeds=(0, 1, 2), iterations=(0, 150, 300), slope=None):
    """A tidy GMM table: model/inference error and gradient std per estimator, K, seed, iteration, and the PMF
    snapshots of Fig 5.  ``slope[e]``: how the final errors move with K (negative: improve)."""
    rng = np.random.default_rng(0)
    rows = []
    for e in estimators:
        for K in Ks:
            for s in seeds:
                for it in iterations:
                    f = 1.0 / (1 + it / 100) * (1 + (slope or {}).get(e, 0.0) * np.log(K)) + 0.01 * rng.random()
                    for m in ("model_error", "inference_error", "grad_std_phi"):
                        rows.append((e, K, s, it, m, max(f, 1e-3) * (1 + 0.05 * rng.standard_normal())))
                    if it in (iterations[0], iterations[len(iterations) // 2], iterations[-1]):
                        p = rng.dirichlet(np.ones(20))
                        rows += [(e, K, s, it, f"prior_pmf[z={c}]", float(p[c])) for c in range(20)]
                        for x in (20, 70):
                            q = rng.dirichlet(np.ones(20))
                            rows += [(e, K, s, it, f"guide_pmf[x={x},z={c}]", float(q[c])) for c in range(20)]
    t = pd.DataFrame(rows, columns=["estimator", "particles", "seed", "iteration", "metric", "value"])
    return t.assign(study="gmm", model="gmm", label=t.estimator, key=t.estimator + "-" + t.particles.astype(str),
                    model_name="gmm", model_options="{}")


def write_cells(store, study, model, estimators, Ks, seeds, iterations, rows_of, finished, **options):
    for i, e in enumerate(estimators):
        for K in Ks:
            cell = Cell(study=study, model=model, estimator=e, particles=K, seeds=tuple(seeds), iterations=iterations,
                        eval_every=max(1, iterations // 2), device="cpu", **options)
            store.write_cell(cell, rows_of(e, K), 1.0, finished_at=finished(i, K), **COMMON)


def short_store(folder, seeds=(0, 1), iterations=300, estimators=("ws", "ww", "dww", "vimco"), Ks=(2, 20),
                runs=(("2026-01-02T10:00:00+00:00", "2026-01-02T11:00:00+00:00", "abc123"),)):
    """A store as a short GMM run writes it (default: 2 seeds × 300 iterations), with its runs."""
    store = Store(folder)
    its = [0, iterations // 2, iterations]
    table = gmm_table(estimators, Ks, seeds, its)
    ids = []
    for start, end, commit in runs:
        ids.append((store.start_run(started_at=start, command="run_all.py", git_commit=commit, machine="m",
                                    backend="loky", jobs=1, cells_total=1), end))
    first = runs[0][0]

    def rows_of(e, K):
        t = table[(table.estimator == e) & (table.particles == K)]
        return list(zip(t.seed, t.iteration, t.metric, t.value))

    def finished(i, K):  # one cell a minute from the first run's start
        return (pd.Timestamp(first) + pd.Timedelta(minutes=1 + 2 * i + (K > 2))).isoformat()

    write_cells(store, "gmm", "gmm", estimators, Ks, seeds, iterations, rows_of, finished)
    for run_id, end in ids:
        store.finish_run(run_id, finished_at=end, cells_run=1, wall_s=1.0)
    return store


def build(folder, store, **kw):
    table, cells, runs = store.table(), store.cells(), store.runs()
    store.close()
    reports.build_site(table, cells, runs, folder, **kw)
    return table, cells, runs


def read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def text_of(page_html):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page_html))


def tables_of(page_html):
    """{section id: [rows of cell texts]} of every table section of a page."""
    out = {}
    for sid, body in re.findall(r'<section id="([^"]+)">(.*?)</section>', page_html, flags=re.S):
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)
        cells = [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, flags=re.S)]
                 for r in rows]
        if cells:
            out[sid] = cells
    return out


def png_size(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
    return struct.unpack(">II", head[16:24])


# -- 1. labels by the settings that differ; no empty columns; a readable contents list ---------------------
LONG = "rbm_vae[ais_chains=200,ais_steps=300,arch={arch},chains=200,gibbs_sweeps=10,groups={groups}]"


def test_long_model_labels_read_by_the_settings_that_differ(tmp_path):
    store = Store(str(tmp_path))
    models = [(LONG.format(arch=a, groups=g), {"arch": a, "groups": g}) for a, g in (("linear", 1), ("nonlinear", 2))]
    for i, (label, options) in enumerate(models):
        for e in ("vimco", "gumbolt"):
            cell = Cell(study="toy", model="rbm_vae", estimator=e, particles=5, seeds=(0, 1, 2), iterations=4,
                        eval_every=2, device="cpu", model_options=dict(options, ais_chains=200, ais_steps=300,
                                                                       chains=200, gibbs_sweeps=10))
            rows = [(s, it, "test_elbo", -100.0 + it + s + i) for s in (0, 1, 2) for it in (0, 2, 4)]
            store.write_cell(cell, rows, 1.0, finished_at="2026-01-02T10:00:00+00:00", **COMMON)
    table = store.table()
    assert set(table.model) == {m for m, _ in models}, "the test needs the long labels the store writes"
    build(str(tmp_path), store)
    page = read(tmp_path / "toy" / "index.html")
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert "Final-iteration summary: rbm_vae[arch=linear,groups=1]" in titles
    assert not any("ais_chains" in t for t in titles), titles
    toc = re.search(r'<ul class="toc">(.*?)</ul>', page, flags=re.S).group(1)
    assert "ais_chains" not in toc
    # every setting stays on the page, once, in the models table
    models_table = tables_of(page)["models"]
    assert models_table[0][:3] == ["model (as named on this page)", "model name", "ais_chains"]
    assert ["rbm_vae[arch=nonlinear,groups=2]", "rbm_vae", "200", "300", "nonlinear", "200", "10", "2"] \
        in models_table
    # a contents entry breaks inside its column instead of running into the next one
    assert re.search(r"ul\.toc li \{[^}]*overflow-wrap: anywhere", page)


def test_estimator_settings_suffix_keeps_only_what_differs_in_its_table():
    a = "vimco {study_options.pretrain_ae_steps=1000, study_options.pretrain_cd_steps=200}"
    b = "vimco {study_options.pretrain_ae_steps=0, study_options.pretrain_cd_steps=200}"
    assert naming.estimator_names([a, b]) == {a: "VIMCO {study_options.pretrain_ae_steps=1000}",
                                            b: "VIMCO {study_options.pretrain_ae_steps=0}"}
    assert naming.estimator_names([a, "contrastive_rws"]) == {a: "VIMCO", "contrastive_rws": "Contrastive RWS"}
    assert naming.estimator_names(["dww †", "overlap_exp[elbo=marginal]"]) == {
        "dww †": "δ-WW †", "overlap_exp[elbo=marginal]": tb.display_name("overlap_exp") + "[elbo=marginal]"}


def test_rbm_pretraining_table_has_no_empty_metric_column():
    from estibench.studies.rbm import page as rbm
    rows = [("m", "vimco", s, it, m, v) for s in (0, 1) for it in (0, 5)
            for m, v in (("pretrain_ae_first", -200.0), ("pretrain_ae_last", -90.0), ("pretrain_ae_binary", 0.6))]
    table = pd.DataFrame(rows, columns=["model", "label", "seed", "iteration", "metric", "value"])
    frame = rbm.pretraining_table(table)
    assert list(frame.columns) == ["model", "estimator", "reconstruction, first tenth", "reconstruction, last tenth",
                                   "binary codes (fraction)"]
    assert frame.columns.name is None
    html = render.frame_html(frame)
    assert "<th>metric</th>" not in html and "<th></th>" not in html


# -- 2. many lines: distinct styles, legends outside the axes; readable Fig 5 -------------------------------
def capture(monkeypatch):
    figures = []

    def keep(fig, path, dpi=100):
        figures.append(fig)
        return path
    monkeypatch.setattr(plotstyle, "save", keep)
    return figures


def assert_distinct_and_outside(fig, min_labels):
    """Every labelled line's (colour, line style) differs from every other label's, and the figure legend's box
    overlaps no axes' box (ticks, tick labels and axis labels included)."""
    import matplotlib.colors as mcolors
    styles = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            label = line.get_label()
            if label.startswith("_"):
                continue
            dashes = getattr(line, "_unscaled_dash_pattern", (None, None))[1]  # matplotlib keeps no public getter
            style = (mcolors.to_hex(line.get_color()), line.get_linestyle(), tuple(dashes or ()))
            styles.setdefault(label, set()).add(style)
    assert len(styles) >= min_labels, sorted(styles)
    assert all(len(s) == 1 for s in styles.values()), "one label, one style across panels"
    pairs = [next(iter(s)) for s in styles.values()]
    assert len(set(pairs)) == len(pairs), "two labels share a (colour, line style)"
    renderer = fig.canvas.get_renderer()
    assert fig.legends, "the figure has a legend"
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.get_visible() and ax.axison:
                assert not box.overlaps(ax.get_tightbbox(renderer)), "the legend covers an axes"
    assert not any(ax.get_legend() for ax in fig.axes), "no legend inside an axes"


def test_line_styles_are_pairwise_distinct_for_many_labels():
    labels = [f"e{i}" for i in range(60)]
    styles = plotstyle.line_styles(labels, {l: i % 2 for i, l in enumerate(labels)})
    pairs = [(s["color"], str(s["linestyle"])) for s in styles.values()]
    assert len(set(pairs)) == 60
    # the groups' style where it is free: the paper's seven solid, those published since dashed
    gmm_styles = plotstyle.line_styles(PAPER + LATER, gmm._groups(PAPER + LATER))
    assert all(gmm_styles[e]["linestyle"] == "-" for e in PAPER)
    assert all(gmm_styles[e]["linestyle"] != "-" for e in LATER)


def test_gmm_fig4_with_fourteen_estimators_tells_every_line_apart(monkeypatch, tmp_path):
    figures = capture(monkeypatch)
    gmm.figure_curves(gmm_table(), str(tmp_path / "f.png"))
    fig = figures[0]
    fig.canvas.draw()
    assert_distinct_and_outside(fig, 14)
    names = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"δ-WW", "DisARM (categorical)", "unordered set"} <= names and "dww" not in names


def test_every_multi_line_figure_follows_the_style_rule(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt
    from estibench.reports import basket
    from estibench.studies.sbn import page as sbn
    from estibench.studies.vae import page as vae
    figures = capture(monkeypatch)
    many = PAPER + LATER
    path = str(tmp_path / "f.png")
    # the generic learning curves (every study page without its own)
    t = gmm_table(many, Ks=(2,), seeds=(0, 1), iterations=(0, 10))
    t = t[t.metric.isin(["model_error", "inference_error", "grad_std_phi"])]
    generic.figure_learning_curves(t, path, ["model_error"])
    # the resampled proposal
    d = pd.DataFrame([(e, 2, K, 1.0 / K + i, 4) for i, e in enumerate(many) for K in (1, 10, 100)],
                     columns=["label", "particles", "K", "distance", "n"])
    gmm.figure_resampled(d, path)
    # SBN curves
    s = t.assign(model="sbn[arch=linear1]", model_name="sbn", model__arch="linear1", dataset="d",
                 metric=t.metric.map({"model_error": "valid_ll", "inference_error": "train_elbo",
                                      "grad_std_phi": "x"}), iteration=t.iteration + 1)
    sbn.figure_curves(s, path, ["valid_ll", "train_elbo"], "title")
    # VAE / AIR's Fig. 1-2 layout
    v = pd.concat([t.assign(metric=t.metric.map({"model_error": "valid_ll", "inference_error": "test_ll[K=100]",
                                                 "grad_std_phi": "kl_posterior"}), key=t.label + t.particles.astype(str))])
    vae.curves_and_k_figure(v, path, many)
    # the gradient basket
    b = t[t.metric == "model_error"].assign(metric=[f"basket_logvar[e={e}]" for e in t[t.metric == "model_error"].label],
                                            label="ws")
    basket.figure_basket(b, path)
    assert len(figures) == 5
    for fig in figures:
        fig.canvas.draw()
        assert_distinct_and_outside(fig, 14)
        plt.close(fig)


def test_fig5_is_drawn_near_its_natural_size(tmp_path):
    """14 estimators' Hinton grids fit a page column (≤ 1,150 px wide: shown at ≥ 98 % of their size)."""
    path = gmm.figure_hinton(gmm_table(), 2, str(tmp_path / "h.png"))
    width, height = png_size(path)
    assert width <= 1150 and height > width, (width, height)


def test_index_shows_the_main_figure_at_its_own_size(tmp_path):
    store = short_store(str(tmp_path))
    build(str(tmp_path), store)
    page = read(tmp_path / "index.html")
    rule = re.search(r"img\.thumb \{([^}]*)\}", page).group(1)
    assert "width: auto" in rule and "max-width: 100%" in rule and "float" not in rule
    m = re.search(r'<img class="thumb" src="([^"]+)"', page)
    width, _ = png_size(tmp_path / m.group(1))
    assert width <= 1150, "the main figure is shown unscaled in a 1,180-px page"


# -- 3. the blurb is the run's -------------------------------------------------------------------------
def test_blurb_states_the_run_the_store_holds(tmp_path):
    from estibench.cli.common import study_descriptions
    store = short_store(str(tmp_path), seeds=(0, 1), iterations=300)
    build(str(tmp_path), store, descriptions=study_descriptions("default"))
    suite = study_descriptions("default")["gmm"]
    assert "3 seeds × 3,000 iterations" in suite, "the test needs the suite's own numbers"
    for page in (tmp_path / "gmm" / "index.html", tmp_path / "index.html"):
        text = text_of(read(page))
        assert "This run (read from the store): 8 cells, 4 estimators, K ∈ {2, 20}; 2 seeds × 300 iterations " \
               "per cell." in text
        # the suite's numbers appear only as its default
        before, _, after = text.partition("The suite's default is:")
        assert "3,000 iterations" not in before and "3 seeds × 3,000 iterations" in after
    assert "2 seeds × 300 iterations per cell" in read(tmp_path / "gmm" / "report.md")


def test_run_facts_count_mixed_budgets():
    cells = pd.DataFrame({"key": list("abc"), "study": "s", "model": "m", "label": ["x", "y", "y"],
                          "estimator": ["x", "y", "y"], "particles": [2, 2, 5],
                          "seeds": ["[0, 1, 2]", "[0, 1, 2]", "[0]"], "config": "{}", "iterations": [100, 100, 7],
                          "status": "done"})
    assert summary.run_facts(cells) == ("**This run** (read from the store): 3 cells, 2 estimators, K ∈ {2, 5}; "
                                     "seeds per cell: 3 seeds (2 cells), 1 seed (1 cell); iterations per cell: "
                                     "100 iterations (2 cells), 7 iterations (1 cell).")
    settings = cells.assign(label=["x {lr=1}", "x {lr=2}", "y"], seeds="[0, 1]", iterations=300)
    assert summary.run_facts(settings) == ("**This run** (read from the store): 3 cells, 2 estimators, K ∈ {2, 5}; "
                                        "2 seeds × 300 iterations per cell.")


# -- 4. one naming scheme per page ------------------------------------------------------------------
def test_registry_names_appear_only_in_the_estimators_table(tmp_path):
    store = short_store(str(tmp_path))
    build(str(tmp_path), store)
    page = read(tmp_path / "gmm" / "index.html")
    registry = {"ws", "ww", "dww", "vimco"}  # display names WS, WW, δ-WW, VIMCO
    found = tables_of(page)
    assert found["variants"][0] == ["estimator", "registry name", "what it computes"]
    assert [r[:2] for r in found["variants"][1:]] == [["WS", "ws"], ["WW", "ww"], ["δ-WW", "dww"], ["VIMCO", "vimco"]]
    for sid, rows in found.items():
        if sid == "variants":
            continue
        cells = {c.rstrip(" †") for r in rows for c in r}
        assert not cells & registry, (sid, cells & registry)
    assert "δ-WW" in text_of(page)


# -- 5. a verdict needs enough points ------------------------------------------------------------------
def test_trend_findings_need_three_K_values():
    slope = {"ws": -0.2, "ww": -0.2, "vimco": 0.2, "reinforce": 0.2, "relax": 0.2}
    two = gmm.findings_table(gmm_table(PAPER, Ks=(2, 20), slope=slope))
    trends = two[two.iloc[:, 0].str.contains("with K")]
    assert len(trends) == 4
    assert (trends.verdict == "not judged (2 K values)").all()
    assert not trends["measured here"].str.contains("ρ").any()
    four = gmm.findings_table(gmm_table(PAPER, Ks=(2, 5, 10, 20), slope=slope))
    trends = four[four.iloc[:, 0].str.contains("with K")]
    assert trends.verdict.isin(["reproduced", "not reproduced"]).all() and (trends.verdict == "reproduced").any()
    assert trends["measured here"].str.contains("ρ = ").all()
    assert not four.verdict.str.startswith("not judged").any()
    assert not four["measured here"].str.contains(r"K ∈ \[\]").any()


def test_findings_need_three_seeds_and_the_caption_says_so():
    two_seeds = gmm.findings_table(gmm_table(PAPER, Ks=(2, 5, 10, 20), seeds=(0, 1)))
    assert (two_seeds.verdict == "not judged (2 seeds)").all()
    section = [s for s in gmm.sections(gmm_table(PAPER, Ks=(2, 20))) if s.name == "findings"][0]
    assert f"at least {gmm.MIN_TREND_K} K values" in section.caption
    assert f"at least {gmm.MIN_SEEDS} seeds" in section.caption


# -- 6. the paper-budget answer beside a short run ---------------------------------------------------------
def test_committed_reference_matches_the_published_store():
    source = os.path.join(ROOT, "published", "gmm", "metrics.csv.gz")
    if not os.path.exists(source):
        pytest.skip("no published/gmm in this checkout")
    ref = gmm.load_reference()
    assert ref is not None, "studies/gmm/gmm_reference.json is committed beside studies/gmm/page.py"
    fresh = json.loads(json.dumps(gmm.reference_from(pd.read_csv(source))))
    assert ref == fresh, "regenerate: python -m estibench.studies.gmm.page --write-reference"
    assert ref["iterations"] == [100_000] and ref["seeds"] == [10]


def test_short_run_index_and_page_carry_the_paper_budget_answer(tmp_path):
    ref = gmm.load_reference()
    if ref is None:
        pytest.skip("no committed reference")
    store = short_store(str(tmp_path))
    build(str(tmp_path), store)
    index = text_of(read(tmp_path / "index.html"))
    assert "your run (2 seeds × 300 iterations): indicative only" in index
    assert "gmm at the paper's budget (committed reference)" in index
    assert "10 seeds × 100,000 iterations" in index
    # the reference's verdicts, as committed, on the index
    for finding, _, verdict in ref["findings"][:3]:
        assert f"{finding} {verdict}" in index
    page = read(tmp_path / "gmm" / "index.html")
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert "The paper's findings at the paper's budget (committed reference)" in titles
    assert "The paper's findings: your run (2 seeds × 300 iterations): indicative only" in titles
    assert titles.index("The paper's findings at the paper's budget (committed reference)") < titles.index(
        "The paper's findings: your run (2 seeds × 300 iterations): indicative only")


def test_without_the_reference_one_honest_line(tmp_path, monkeypatch):
    monkeypatch.setattr(gmm, "REFERENCE_PATH", str(tmp_path / "absent.json"))
    store = short_store(str(tmp_path / "site"))
    build(str(tmp_path / "site"), store)
    index = text_of(read(tmp_path / "site" / "index.html"))
    assert "is not in this installation, so this site shows your run (2 seeds × 300 iterations): indicative only" \
        in index
    assert "committed reference)" not in index


def test_a_run_at_the_paper_budget_shows_no_reference():
    ref = {"iterations": [300], "seeds": [2], "K": [2, 20], "cells": 8, "source": "x", "findings": [], "final": [],
           "final_columns": [], "metric": "inference_error"}
    assert gmm.reference_sections(gmm_table(PAPER, seeds=(0, 1)), ref) == []
    assert gmm.reference_sections(gmm_table(PAPER, seeds=(0,)), ref) != []


# -- 7. dirty trees ------------------------------------------------------------------------------------
def test_cells_from_a_dirty_tree_are_named_on_their_page(tmp_path):
    runs = (("2026-01-02T10:00:00+00:00", "2026-01-02T10:04:30+00:00", "1111111111aaaa"),
            ("2026-01-02T10:04:40+00:00", "2026-01-02T11:00:00+00:00", "2222222222bbbb+dirty"))
    store = short_store(str(tmp_path), runs=runs)  # cells finish at 10:01, 10:02, …, 10:08
    build(str(tmp_path), store)
    text = text_of(read(tmp_path / "gmm" / "index.html"))
    line = re.search(r"Computed from a modified tree.*?not exactly any commit\.", text).group(0)
    assert "4 of 8 cells (δ-WW K = 2, δ-WW K = 20, VIMCO K = 2, VIMCO K = 20)" in line
    assert "run 2 2222222222+dirty" in line
    assert "run 1 1111111111 (4 cells); run 2 2222222222+dirty (4 cells)" in text
    assert "Computed from a modified tree" in text_of(read(tmp_path / "index.html"))


def test_cells_of_overlapping_dirty_and_clean_runs_are_said_to_may_be_dirty(tmp_path):
    runs = (("2026-01-02T10:00:00+00:00", "2026-01-02T11:00:00+00:00", "1111111111aaaa"),
            ("2026-01-02T10:04:40+00:00", "2026-01-02T11:00:00+00:00", "2222222222bbbb+dirty"))
    store = short_store(str(tmp_path), runs=runs)
    build(str(tmp_path), store)
    text = text_of(read(tmp_path / "gmm" / "index.html"))
    assert ("Computed from a modified tree (a +dirty commit): 4 of 8 cells may be, having finished while a dirty and "
            "a clean run were both running (δ-WW K = 2, δ-WW K = 20, VIMCO K = 2, VIMCO K = 20) — run 2 "
            "2222222222+dirty") in text


def test_a_clean_store_says_nothing_of_dirty_trees(tmp_path):
    store = short_store(str(tmp_path))
    build(str(tmp_path), store)
    text = text_of(read(tmp_path / "gmm" / "index.html"))
    assert "modified tree" not in text
    assert "run 1 abc123 (8 cells)" in text


# -- 8. numerics versions -------------------------------------------------------------------------------
def test_each_page_says_which_numerics_versions_its_cells_are(tmp_path):
    store = short_store(str(tmp_path))
    table, cells, _ = build(str(tmp_path), store)
    stored = sorted({int(v) for v in cells.numerics_version.fillna(1)})
    current = {numerics_version("gmm", e) for e in ("ws", "ww", "dww", "vimco")}
    text = text_of(read(tmp_path / "gmm" / "index.html"))
    line = re.search(r"Numerics: cells computed under numerics version\(s\) (.*?)\.(?: |$)", text).group(0)
    assert ", ".join(f"{v} (8 cells)" for v in stored) in line
    assert f"the current code computes version {', '.join(map(str, sorted(current)))}" in line
    assert "Numerics: cells computed under" in text_of(read(tmp_path / "index.html"))


def test_older_cells_say_what_changed_since():
    from estibench.harness import runner
    cells = pd.DataFrame({"key": ["a", "b"], "study": "gmm", "model": "gmm", "model_name": "gmm", "label": ["ws", "relax"],
                          "estimator": ["ws", "relax"], "particles": 2, "numerics_version": [None, 2.0],
                          "status": "done"})
    text = summary.numerics_text(cells, "gmm")
    assert "version(s) 1 (1 cell), 2 (1 cell)" in text
    for e, v in (("ws", 1), ("relax", 2)):
        for version, change in runner.numerics_history("gmm", e):
            if version > v:
                assert change.what in text
    if runner.numerics_version("gmm", "relax") == 2:
        assert "what changed" not in text.split("RELAX")[-1]
