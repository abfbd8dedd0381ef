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
            assert isinstance(grid, studies.Suite) and suites[suite] is grid
            assert grid.study == name and grid.description and all(isinstance(p, studies.Part) for p in grid.parts)
            assert all(isinstance(p, studies.Preset) for p in grid.presets.values())
        for source in study.published.values():
            assert source.source and source.values
    flags = {o for a in parser()._actions for o in a.option_strings}
    assert {"--dataset", "--arch"} <= flags  # declared by the SBN study (grid_flags), not written in the CLI


def test_display_names_orders_and_cost_hints_are_declared_not_tabled():
    """No import cycle: the site does not import a study's page module; names come from the estimators."""
    code = ("import sys; import estibench.reports.site as s; "
            "assert 'estibench.studies.gmm.page' not in sys.modules and 'estibench.studies.sbn.page' not in sys.modules; "
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
        from estibench.studies import Study, Suite


        class ToyTask(GMMTask):
            """The GMM task with a smaller test set."""


        def sections(table, cells, artifacts=None):
            return [Section("Toy page", "text", f"{table.label.nunique()} estimators measured here", name="toy")]


        def make():
            return Study(name="toy", description="a toy study", task="toystudy:ToyTask", page="toystudy:sections",
                         suites={"toy": Suite(model="gmm", estimators=("ww", "vimco"), particles=(2,), seeds=1,
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


def test_a_suites_parts_resolve_suite_then_preset_then_part(tmp_path, monkeypatch, capsys):
    """``Suite.resolved_parts``: the suite's settings, the preset's over them, each part's over those (a field a part
    leaves None is inherited; a dict is replaced whole); a preset's parts replace the suite's.  A ``Suite`` object
    (with its study) is taken by ``--suite module:Attr`` like a dict one."""
    suite = studies.Suite(model="gmm", estimators=("ww",), particles=(2,), seeds=1, iterations=4, eval_every=2,
                          batch_size=10, lr=1e-3, study_options={"a": 1}, study="gmm",
                          presets={"p": studies.Preset(lr=0.5, study_options={"b": 2}),
                                   "q": studies.Preset(parts=(studies.Part(seeds=3),))},
                          parts=(studies.Part(), studies.Part(estimators=("vimco",), lr=0.25, model_options={})))
    plain, own = suite.resolved_parts()
    assert (plain.lr, plain.estimators, plain.study_options, plain.study) == (1e-3, ("ww",), {"a": 1}, "gmm")
    assert (own.lr, own.estimators, own.particles) == (0.25, ("vimco",), (2,))
    preset, both = suite.resolved_parts(suite.presets["p"])
    assert (preset.lr, preset.study_options, both.lr, both.study_options) == (0.5, {"b": 2}, 0.25, {"b": 2})
    assert [(p.seeds, p.lr) for p in suite.resolved_parts(suite.presets["q"])] == [(3, 1e-3)]
    assert studies.Suite.from_dict({"model": "gmm", "estimators": ("ww",), "particles": (2,), "seeds": 1,
                                    "iterations": 4, "eval_every": 2, "batch_size": 10, "lr": 1e-3,
                                    "parts": [{}, {"seeds": 2}], "presets": {"p": {"parts": [{"lr": 0.1}]}}}
                                   ).presets["p"].parts == (studies.Part(lr=0.1),)
    (tmp_path / "mysuite.py").write_text("from estibench.studies import Part, Suite\n"
                                         "TINY = Suite(study='gmm', model='gmm', estimators=('ww',), particles=(2,), "
                                         "seeds=1, iterations=2, eval_every=1, batch_size=10, lr=1e-3, "
                                         "parts=(Part(), Part(particles=(3,))))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mysuite", raising=False)
    from estibench.cli import main
    assert main(["--suite", "mysuite:TINY", "--dry-run", "--out", str(tmp_path / "out")]) == 0
    assert "2 cells" in capsys.readouterr().out
