"""The static report site (reports.build_site): built from a small store holding done, diverged
and failed cells of two studies and one recorded run; its pages, run summary, definitions,
exported tables, well-formedness, self-containment (no network), and — where Chromium and
chromedriver are installed — that every page renders in a headless browser with all images
loaded and no console errors.  Also the interval text and LaTeX export (reports.tables; the intervals and
ranks themselves: tests/test_intervals.py)."""
import glob
import html
import inspect
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from estibench import reports, studies
from estibench.harness.runner import Cell
from estibench.harness.store import Store
from estibench.reports import glossary as defs
from estibench.reports import tables as tb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASIC = ["model_error", "inference_error", "grad_std_phi", "grad_std_phi_code", "log_px", "kl_qp", "kl_pq"]
EXACT = ["bias_sq", "variance", "mse", "rel_bias", "norm"]
COMMIT = "0123abcd4567ef"
TRACEBACK = ('Traceback (most recent call last):\n  File "harness/runner.py", line 140, in train_cell\n'
             '    model_grads, own_grads, objective = estimator.gradients(model, x, cell.particles)\n'
             'RuntimeError: boom <in the estimator>')


def gmm_rows(seeds, iterations, last, rng, quality):
    """Plausible GMM rows: errors that fall with training, PMF snapshots at 0, N/2, N and
    exact-gradient errors at 0 and N (only at the evaluations that happened)."""
    rows = []
    for s in seeds:
        for it in iterations:
            f = np.exp(-it / (4 * quality)) + 0.05
            for m in BASIC:
                rows.append((s, it, m, float(f * (1 + 0.1 * rng.standard_normal()) * (-1 if m == "log_px" else 1))))
            if it > 0:
                rows += [(s, it, "sec_per_iter", 0.002 + 1e-4 * rng.random()),
                         (s, it, "train_objective", -3.0 - f + 0.01 * rng.standard_normal())]
            if it in (0, last // 2, last):
                p = rng.dirichlet(np.ones(20))
                rows += [(s, it, f"prior_pmf[z={c}]", float(p[c])) for c in range(20)]
                for x in (20, 70):
                    q = rng.dirichlet(np.ones(20))
                    rows += [(s, it, f"guide_pmf[x={x},z={c}]", float(q[c])) for c in range(20)]
            if it in (0, last):
                rows += [(s, it, f"exact_grad/{m}", float(abs(rng.standard_normal()) + 0.1)) for m in EXACT]
    return rows


def cell(study="gmm", model="gmm", estimator="ws", particles=2):
    return Cell(study=study, model=model, estimator=estimator, particles=particles, seeds=(0, 1, 2),
                iterations=8, eval_every=2, device="cpu")


def fill_store(folder, which=("gmm", "toy")):
    store = Store(folder)
    rng = np.random.default_rng(1)
    its = [0, 2, 4, 6, 8]
    run = store.start_run(started_at="2026-01-02T10:00:00+00:00", command="python run_all.py --suite default",
                          git_commit=COMMIT, machine="x86_64, 2 CPUs", backend="joblib", jobs=2, cells_total=5,
                          versions={"torch": "2.13.0", "numpy": "1.26.4", "python": "3.11.7"})
    common = dict(sec_per_iter=0.002, device="cpu", machine="x86_64, 2 CPUs, torch 2.13.0+cpu, Python 3.11.7")
    if "gmm" in which:
        store.write_cell(cell(estimator="ws"), gmm_rows((0, 1, 2), its, 8, rng, 1.0), 12.0,
                         finished_at="2026-01-02T10:01:00+00:00", **common)
        store.write_cell(cell(estimator="vimco"), gmm_rows((0, 1, 2), its, 8, rng, 2.0), 14.0,
                         finished_at="2026-01-02T10:01:30+00:00", **common)
        store.write_cell(cell(estimator="ww"), gmm_rows((0, 1, 2), its[:3], 8, rng, 1.5), 9.0,
                         finished_at="2026-01-02T10:01:40+00:00", status="diverged", diverged_at=6, **common)
    if "gmm" in which or "failed" in which:
        store.write_cell(cell(estimator="reinforce"), [], 0.5, finished_at="2026-01-02T10:01:41+00:00",
                         status="failed", error=TRACEBACK, **common)
    if "toy" in which:
        rows = [(s, it, m, float(v)) for s in (0, 1, 2) for it in its
                for m, v in (("log_px", -5 + it / 8 + 0.1 * s), ("train_objective", -6 + it / 8 - 0.1 * s))]
        store.write_cell(cell(study="toy", model="toy", estimator="reinforce", particles=3), rows, 3.0,
                         finished_at="2026-01-02T10:02:00+00:00", **common)
    store.finish_run(run, finished_at="2026-01-02T10:02:03+00:00", cells_run=5, wall_s=123.4)
    return store


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("store"))
    store = fill_store(folder)
    table, cells, runs = store.table(), store.cells(), store.runs()
    store.close()
    index = reports.build_site(table, cells, runs, folder, descriptions={"gmm": "GMM of RWS §4.3, tiny"},
                               note="a note about this run")
    return folder, index, table, cells


def read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def html_pages(folder):
    return sorted(glob.glob(os.path.join(folder, "**", "*.html"), recursive=True))


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Checker(HTMLParser):
    """Tag balance, duplicate ids, and every src/href (with the tag it came from)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.refs, self.ids = [], [], [], []

    def _attrs(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href") and v is not None:
                self.refs.append((tag, k, v))
            if k == "id":
                self.ids.append(v)

    def handle_starttag(self, tag, attrs):
        self._attrs(tag, attrs)
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        self._attrs(tag, attrs)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def check_html(path):
    c = Checker()
    c.feed(read(path))
    c.close()
    return c


# -- the site's content ----------------------------------------------------------------------------
def test_index_links_every_study_page(built):
    folder, index, table, cells = built
    assert index == os.path.join(folder, "index.html")
    text = read(index)
    for study in ("gmm", "toy"):
        assert f'href="{study}/index.html"' in text
        page = os.path.join(folder, study, "index.html")
        assert os.path.exists(page) and os.path.exists(os.path.join(folder, study, "report.md"))
        assert 'href="../index.html"' in read(page)
    assert "a note about this run" in text and "GMM of RWS §4.3, tiny" in text
    assert os.path.exists(os.path.join(folder, "report.md"))


def test_index_opens_with_the_leaderboards(built):
    """The answer first: per study with a headline metric (Study.headline; gmm: inference_error, lower is better)
    its ranked table — final value per seed, mean and Student-t interval over seeds — and a thumbnail of its main
    figure; the study list and the run metadata below.  The toy study declares no headline: no leaderboard."""
    from estibench.reports.leaderboard import leaderboard
    folder, index, table, cells = built
    text = read(index)
    assert text.index("<h2>Leaderboards</h2>") < text.index("<h2>Studies</h2>") < text.index("<h2>Run summary</h2>")
    assert 'src="gmm/fig4_gmm_training.png"' in text and 'id="leaderboard-toy"' not in text
    board = leaderboard(table, "gmm", studies.get("gmm").headline)
    assert list(board.columns) == ["model", "K", "rank", "estimator", "seeds", "inference_error"]
    # ranks separate only what the seeds separate (tables.separated_ranks on the final rows, computed here);
    # rows by rank, then by mean (lower first); estimators by display name, as the figures name them
    final = table[(table.metric == "inference_error")]
    final = final[final.iteration == final.groupby("label").iteration.transform("max")]
    means = final.groupby("label").value.mean()
    ranks = tb.separated_ranks({l: g.value for l, g in final.groupby("label")}, higher_is_better=False)
    expected = sorted(means.index, key=lambda l: (ranks[l], means[l]))
    assert board.estimator.tolist() == [tb.pretty_label(l) for l in expected] and "WW" in board.estimator.tolist()
    assert board["rank"].tolist() == [ranks[l] for l in expected]
    assert board.seeds.tolist() == [3] * len(board)
    md = read(os.path.join(folder, "report.md"))
    assert md.index("## Leaderboards") < md.index("## Studies")


def test_the_sbn_leaderboard_prints_the_published_value_beside_ours():
    from estibench.studies.sbn import published_test_ll
    value = published_test_ll({"model_name": "sbn", "model__arch": "nonlinear"}, "rebar[variant=rebar_code]")
    assert str(value) == "-100.69 ± 0.08" and value.steps == 2_000_000 and "MNIST" in value.data  # with its budget
    assert value.budget == "DVAE++ Table 1: 2M steps, static MNIST, 50k images"
    assert published_test_ll({"model_name": "sbn", "model__arch": "linear2"}, "rebar[variant=rebar_code]") is None
    assert published_test_ll({"model_name": "sbn_tiny", "model__arch": "linear1"}, "nvil") is None


def test_every_metric_has_its_definition_shown(built):
    folder, index, table, _ = built
    text = html.unescape(read(index)).replace('<span class="nw">', "").replace("</span>", "")  # nowrap cells
    for metric in table.metric.unique():
        key = defs.family(metric)
        assert key is not None, f"{metric} has no definition in reports/definitions.py"
        assert f"<td>{key}</td>" in text and defs.all_definitions()[key] in text, metric
    for study in ("gmm", "toy"):
        page = html.unescape(read(os.path.join(folder, study, "index.html")))
        for metric in table[table.study == study].metric.unique():
            assert defs.all_definitions()[defs.family(metric)] in page, (study, metric)
    assert "(no definition registered" not in text
    assert defs.family("guide_pmf[x=120,z=19]") == "guide_pmf[x=v,z=c]"
    assert defs.families(["made_up_metric"]) == [("made_up_metric", None)]


def test_run_summary_counts_commit_versions_divergence_and_tracebacks(built):
    folder, index, _, _ = built
    for text in (read(index), read(os.path.join(folder, "report.md"))):
        assert "3 done, 1 diverged, 1 failed" in text
        assert COMMIT in text and "torch 2.13.0" in text and "numpy 1.26.4" in text
        assert "python run_all.py --suite default" in text
        assert "diverged at iteration 6" in text
        assert "RuntimeError: boom" in text
    page = read(index)
    details = re.findall(r"<details>(.*?)</details>", page, flags=re.S)
    assert len(details) == 1 and "harness/runner.py" in details[0] and "&lt;in the estimator&gt;" in details[0]
    assert re.search(r"wall time 2\.\d min", page)  # 123.4 s of the recorded run
    gmm = read(os.path.join(folder, "gmm", "index.html"))
    assert "2 done, 1 diverged, 1 failed" in gmm and "WW †" in gmm and "failed ✗" in gmm


def test_aggregates_are_labelled(built):
    folder, _, _, _ = built
    gmm = read(os.path.join(folder, "gmm", "index.html"))
    toy = read(os.path.join(folder, "toy", "index.html"))
    label = "mean [95% Student-t interval for the mean] over seeds"  # method and n wherever printed
    assert label + ", n = the <code>n seeds</code> column" in toy  # generic page: final-iteration mean [CI]
    assert label + ", n = 3 seeds" in gmm  # exact-gradient table
    assert label + ", n = the <code>n seeds</code> column" in gmm  # summary: the leaderboard's statistic
    assert "median and interquartile range" in gmm  # Fig 4: the paper's median, described as such
    final = pd.read_csv(os.path.join(folder, "toy", "tables", "final_summary.csv"))
    assert list(final.columns[:3]) == ["estimator", "K", "n seeds"] and final["n seeds"].tolist() == [3]
    # the toy cell's final log_px over seeds 0, 1, 2 is -4 + 0.1 s: mean -3.9, s = 0.1, ± t(0.975; 2) 0.1/√3
    m, lo, hi = map(float, re.match(r"(\S+) \[(\S+), (\S+)\]", final.loc[0, "log_px"]).groups())
    half = 4.303 * 0.1 / np.sqrt(3)
    assert m == pytest.approx(-3.9)
    assert lo == pytest.approx(-3.9 - half, abs=2e-3) and hi == pytest.approx(-3.9 + half, abs=2e-3)


def test_tables_export_as_csv_and_latex(built):
    folder, _, _, _ = built
    csvs = glob.glob(os.path.join(folder, "**", "tables", "*.csv"), recursive=True)
    names = {os.path.relpath(p, folder) for p in csvs}
    assert {"tables/cells.csv", "tables/runs.csv", "tables/metric_definitions.csv", "gmm/tables/summary.csv",
            "gmm/tables/exact_gradient.csv", "gmm/tables/findings.csv", "gmm/tables/cells.csv",
            "toy/tables/final_summary.csv"} <= names
    for path in csvs:
        frame = pd.read_csv(path)
        assert len(frame) > 0 and len(frame.columns) > 1, path
        tex = read(path[:-4] + ".tex")
        assert "\\begin{tabular}" in tex and "\\end{tabular}" in tex, path
    summary = pd.read_csv(os.path.join(folder, "gmm", "tables", "summary.csv"))
    assert set(summary.estimator) == {"WS", "WW †", "VIMCO"} and "model_error" in summary.columns
    assert "model\\_error" in read(os.path.join(folder, "gmm", "tables", "summary.tex"))
    page = read(os.path.join(folder, "gmm", "index.html"))
    assert 'href="tables/summary.csv"' in page and 'href="tables/summary.tex"' in page


def test_pages_are_well_formed_and_self_contained(built):
    folder, _, _, _ = built
    pages = html_pages(folder)
    assert len(pages) == 3
    for page in pages:
        c = check_html(page)
        assert not c.errors and not c.stack, (page, c.errors, c.stack)
        assert len(c.ids) == len(set(c.ids)), page
        text = read(page)
        assert "<script" not in text and "@import" not in text and not re.search(r"url\(\s*['\"]?(https?:)?//", text)
        for tag, attr, ref in c.refs:
            if tag in ("img", "link", "script", "source", "iframe", "embed", "video", "audio"):
                assert not re.match(r"^(https?:)?//", ref), (page, tag, ref)
            if not re.match(r"^(#|data:|[a-z]+:)", ref):  # relative links resolve to files of the site
                assert os.path.exists(os.path.join(os.path.dirname(page), ref.split("#")[0])), (page, ref)
        for src in (v for t, a, v in c.refs if t == "img"):
            with open(os.path.join(os.path.dirname(page), src), "rb") as fh:
                assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_markdown_reports(built):
    folder, _, _, _ = built
    top = read(os.path.join(folder, "report.md"))
    for heading in ("## Run summary", "## Study `gmm`", "### Fig 4: training curves", "### Final-iteration summary",
                    "### The paper's findings", "## Study `toy`", "### Learning curves", "## Metric definitions"):
        assert heading in top, heading
    for md, base in ((top, folder), (read(os.path.join(folder, "gmm", "report.md")), os.path.join(folder, "gmm"))):
        images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
        assert images and all(os.path.exists(os.path.join(base, p)) for p in images)
    assert os.path.exists(os.path.join(folder, "gmm", "fig4_gmm_training.png"))
    assert os.path.exists(os.path.join(folder, "gmm", "fig5_gmm_hinton_K2.png"))


def test_rebuild_replaces_files_and_leaves_others(tmp_path):
    folder = str(tmp_path)
    store = fill_store(folder, which=("toy",))
    reports.build_site(store.table(), store.cells(), store.runs(), folder)
    assert os.path.exists(os.path.join(folder, "toy", "learning_curves.png"))
    open(os.path.join(folder, "keep.txt"), "w").close()
    store.close()
    shutil.move(os.path.join(folder, "results.sqlite"), os.path.join(folder, "old.sqlite"))
    store = fill_store(folder, which=("failed",))  # a store whose only cell failed: no rows at all
    reports.build_site(store.table(), store.cells(), store.runs(), folder)
    assert not os.path.exists(os.path.join(folder, "toy", "learning_curves.png"))  # stale output removed
    assert os.path.exists(os.path.join(folder, "keep.txt")) and os.path.exists(os.path.join(folder, "old.sqlite"))
    assert not [p for p in os.listdir(folder) if p.startswith(".report-build-")]
    page = read(os.path.join(folder, "gmm", "index.html"))
    assert "0 done, 0 diverged, 1 failed" in page and "No finished cells yet." in page
    assert "0 done, 0 diverged, 1 failed" in read(os.path.join(folder, "index.html"))


def test_write_report_keeps_its_content_and_figure_names(built, tmp_path):
    _, _, table, cells = built
    path = reports.write_report(table, cells, str(tmp_path), suite="default", description="desc")
    text = read(path)
    for heading in ("# estibench report: suite `default`", "## Run", "## Fig 4", "## Fig 5", "exact gradient",
                    "## Final-iteration summary", "## The paper's findings", "## Metric definitions"):
        assert heading in text, heading
    assert "(fig4_gmm_training.png)" in text and "(fig5_gmm_hinton_K2.png)" in text
    assert os.path.getsize(tmp_path / "fig4_gmm_training.png") > 10_000
    assert __import__("estibench.studies.gmm.page", fromlist=["DEFINITIONS"]).DEFINITIONS.startswith("| metric | definition |")


# -- table text (the intervals themselves: tests/test_intervals.py) -----------------------------------
def test_interval_text_and_latex_export():
    assert tb.format_ci(1.23456, 1.0, 1.5) == "1.23 [1, 1.5]"
    assert tb.format_ci(1.23456, np.nan, np.nan) == "1.23 [no interval]"  # one seed
    tex = tb.to_latex(pd.DataFrame({"a_b": ["x%"], "K": [2]}), caption="25 % of `it`")
    assert "\\begin{tabular}" in tex and "a\\_b" in tex and "25 \\% of it" in tex


# -- headless browser ------------------------------------------------------------------------------
def browser_paths():
    chromium = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver")
                                              else None)
    return chromium, driver


def test_pages_render_in_a_headless_browser(built, tmp_path):
    chromium, driver_path = browser_paths()
    if chromium is None or driver_path is None:
        pytest.skip("no /usr/bin/chromium and chromedriver (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    folder = built[0]
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        for page in html_pages(folder):
            driver.get("file://" + os.path.abspath(page))
            assert driver.execute_script("return document.readyState") == "complete"
            images = driver.execute_script(
                "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
            assert all(done and width > 0 for _, done, width in images), (page, images)
            assert driver.find_element("tag name", "h1").text
            if os.path.abspath(page) == os.path.abspath(os.path.join(folder, "index.html")):
                # the index opens with the answer: the first section is the leaderboards, a table and a thumbnail
                assert driver.find_element("tag name", "h2").text == "Leaderboards"
                assert driver.find_element("css selector", "h3[id^='leaderboard-'] + a img.thumb, "
                                                           "h3[id^='leaderboard-'] ~ table").is_displayed()
            severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not severe, (page, severe)
    finally:
        driver.quit()


# -- the command line ------------------------------------------------------------------------------
def test_report_subcommand_builds_the_site(built, tmp_path):
    folder = str(tmp_path / "copy")
    os.makedirs(folder)
    shutil.copy(os.path.join(built[0], "results.sqlite"), folder)
    done = subprocess.run([sys.executable, os.path.join(ROOT, "run_all.py"), "report", "--out", folder],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert os.path.exists(os.path.join(folder, "index.html"))
    assert "3 done, 1 diverged, 1 failed" in read(os.path.join(folder, "index.html"))
