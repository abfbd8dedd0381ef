"""A study is one object (issue 9 §3): the CLI, the sweep and the site look studies up by name; a new
study is one module plus one registry line (here an entry point, so nothing in the project changes)."""
import os
import subprocess
import sys
import textwrap

import pandas as pd

from estibench import studies
from estibench.cli.run import parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_study_bundles_its_task_suites_and_page(temporary_study):
    """Over every registered study, a temporary one among them (page-less, and with a page: the fixture): its task
    has the hooks, its page (where it names one) is a function, its suites are listed under it."""
    assert {"gmm", "sbn", temporary_study.name} <= set(studies.names())
    suites = studies.suites()
    for name in studies.names():
        study = studies.get(name)
        assert study.name == name and study.description
        task = study.task_class()
        assert all(callable(getattr(task, m)) for m in ("train_batch", "evaluate", "final_evaluate"))
        assert not study.page or callable(study.page_function())  # a page-less study gets the generic page
        for suite, grid in study.suites.items():
            assert suites[suite]["study"] == name and grid["description"]
        for source in study.published.values():
            assert source.source and source.values
    flags = {o for a in parser()._actions for o in a.option_strings}
    assert {"--dataset", "--arch"} <= flags  # declared by the SBN study (grid_flags), not written in the CLI


def test_display_names_orders_and_cost_hints_are_declared_not_tabled():
    """No import cycle: the site does not import a study's page module; names come from the estimators."""
    code = ("import sys; import estibench.reports.site as s; "
            "assert 'estibench.reports.gmm' not in sys.modules and 'estibench.reports.sbn' not in sys.modules; "
            "from estibench.reports.tables import pretty_label; "
            "assert pretty_label('dww[delta=0.1]') == 'δ-WW[delta=0.1]' and pretty_label('arm') == 'ARM' and pretty_label('mypkg.mod:Mine') == 'mypkg.mod:Mine'; "
            "from estibench import estimators; assert estimators.get('relax').cost_hint == 6.0")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_a_new_study_is_one_module_and_one_registry_line(tmp_path):
    """A study installed through the ``estibench.studies`` entry point group (its own task subclass, suite
    and page) runs through the CLI, the sweep, the store and the site with no edit to the project."""
    site = tmp_path / "site"
    (site / "toystudy-0.1.dist-info").mkdir(parents=True)
    (site / "toystudy-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: toystudy\nVersion: 0.1\n")
    (site / "toystudy-0.1.dist-info" / "entry_points.txt").write_text("[estibench.studies]\ntoy = toystudy:make\n")
    (site / "toystudy.py").write_text(textwrap.dedent('''
        from estibench.studies.gmm.task import GMMTask
        from estibench.reports.section import Section
        from estibench.studies import Study


        class ToyTask(GMMTask):
            """The GMM task with a smaller test set."""


        def sections(table, cells, artifacts=None):
            return [Section("Toy page", "text", f"{table.label.nunique()} estimators measured here", name="toy")]


        def make():
            return Study(name="toy", description="a toy study", task="toystudy:ToyTask", page="toystudy:sections",
                         suites={"toy": dict(model="gmm", estimators=("ww", "vimco"), particles=(2,), seeds=1,
                                             iterations=4, eval_every=2, batch_size=10, lr=1e-3,
                                             study_options={"test_points": 5, "grad_std_samples": 2,
                                                            "exact_samples": 2},
                                             description="toy suite")})
        '''))
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = str(tmp_path / "out")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "run_all.py"), "--suite", "toy", "--out", out,
                           "--device", "cpu"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(os.path.join(out, "metrics.csv"))
    assert set(table.study) == {"toy"} and set(table.label) == {"ww", "vimco"}
    page = open(os.path.join(out, "toy", "report.md")).read()
    assert "2 estimators measured here" in page


def test_the_rodeo_preset_runs_that_papers_setting_and_only_its_estimators():
    """``--suite sbn --preset rodeo``: the DisARM / ARMS / RODEO line's estimators at K = 2 on the dynamically
    binarised digits, linear1 and nonlinear, batch 100, Adam 1e-3 (studies/sbn/__init__.py; studies/sbn/README.md)."""
    from estibench.cli.run import make_cells, parser
    from estibench.studies.sbn import SBN_PAIRED
    cells = make_cells(parser().parse_args(["--suite", "sbn", "--preset", "rodeo"]))
    assert sorted((c.estimator, c.model_options["arch"]) for c in cells) == sorted(
        (e, a) for e in SBN_PAIRED for a in ("linear1", "nonlinear"))
    assert {(c.model, c.model_options["dataset"], c.particles, c.batch_size, c.lr, c.preset) for c in cells} == {
        ("sbn", "mnist5k-dynamic", 2, 100, 1e-3, "rodeo")}
