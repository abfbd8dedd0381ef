"""``--help`` imports no torch: ``run_all.py --help`` and every command's ``--help`` (run, report, check, screen,
fetch-data) answer with parsers built without torch, numpy, pandas or a study (``cli/parsers.py``), whose help lists
the names read from the registering source files (``cli/catalog.py``, with :mod:`ast`).  The names read so must be
the registries' own: the tests below compare them, and each parser's help with the help it had when built from the
imported registries.  No wall-time assertion (machines are noisy): what is imported is checked instead."""
import importlib
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("torch", "numpy", "pandas")
COMMANDS = ("run", "report", "check", "screen", "fetch-data")

#: runs run_all.py as ``python run_all.py ARGS`` does, in this process, then prints what it imported
PROBE = textwrap.dedent("""
    import json, runpy, sys
    sys.argv = ["run_all.py"] + json.loads(sys.argv[1])
    try:
        runpy.run_path("run_all.py", run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r}
                   or m.startswith(("estibench.studies", "estibench.estimators", "estibench.models",
                                    "estibench.data", "estibench.reports", "estibench.harness.")) and
                   m != "estibench.harness.grammar")
    print("\\nIMPORTED " + json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
""").format(heavy=set(HEAVY))


def _help(args):
    import json
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    report = json.loads(done.stderr.rsplit("IMPORTED ", 1)[1])
    return done, report


@pytest.mark.parametrize("args", [["--help"], ["-h"]] + [[command, "--help"] for command in COMMANDS])
def test_help_imports_no_torch(args):
    done, report = _help(args)
    assert done.returncode == 0 and report["code"] in (0, None), done.stderr
    assert report["heavy"] == [], f"{' '.join(args)} imported {report['heavy']}"
    assert done.stdout.startswith("usage: run_all.py"), done.stdout
    assert "Traceback" not in done.stderr, done.stderr


def test_the_top_level_help_lists_the_commands_and_the_names():
    done, _ = _help(["--help"])
    lines = done.stdout.splitlines()
    for command in COMMANDS:  # one line each, in the epilog
        assert any(line.startswith(f"  {command} ") for line in lines), (command, done.stdout)
    text = " ".join(done.stdout.split())
    assert "vimco" in text and "rw+rws" in text  # estimators
    assert "gmm" in text and "air_tiny" in text  # suites
    assert "--arch" in text and "--groups" in text  # the studies' grid flags


def test_the_console_command_help_imports_no_torch():
    code = ("import sys; from estibench import main; status = main(['--help']); "
            "print('HEAVY', [m for m in ('torch', 'numpy', 'pandas') if m in sys.modules], status, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "HEAVY [] 0" in done.stderr, done.stderr
    assert done.stdout.startswith("usage: estibench"), done.stdout
    assert "fetch-data" in done.stdout and "vimco" in done.stdout


def _source_names():
    """What cli/catalog.py reads from the source, in a process that imports no registry."""
    code = textwrap.dedent("""
        import json, sys
        from estibench.cli import catalog
        out = {"estimators": catalog.estimator_names(), "suites": catalog.suite_names(),
               "flags": catalog.grid_flags(), "studies": catalog.studies(), "datasets": catalog.dataset_names(),
               "constants": [catalog.literal("estibench.harness.runner", "COMPILE_MODES"),
                             catalog.literal("estibench.harness.sweep", "BACKENDS"),
                             catalog.literal("estibench.harness.checks", "MIN_DRAWS"),
                             catalog.literal("estibench.harness.checks", "FAMILY_ALPHA"),
                             catalog.literal("estibench.data.sources", "CACHE_ENV"),
                             catalog.literal("estibench.data.sources", "DEFAULT_CACHE")],
               "heavy": [m for m in ("torch", "numpy", "pandas", "estibench.studies", "estibench.estimators")
                         if m in sys.modules]}
        print(json.dumps(out))
    """)
    import json
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_names_read_from_source_are_the_registries():
    """No hand-kept list: the names ast reads equal those the imported registries give (a registration written so
    that ast cannot read it falls back to importing, so this fails only if the reading is wrong)."""
    from estibench import data, estimators, studies
    from estibench.cli.run import grid_flags
    from estibench.harness import checks, runner, sweep
    from estibench.data import sources
    read = _source_names()
    assert read["heavy"] == []
    assert read["estimators"] == [n for n in estimators.names() if ":" not in n]  # not plug-ins admitted by path
    assert read["suites"] == sorted(studies.suites())
    assert list(read["studies"]) == studies.names()
    for name, (suites, flags) in read["studies"].items():
        assert suites == list(studies.get(name).suites)
        assert {k: tuple(v) for k, v in flags.items()} == dict(studies.get(name).grid_flags)
    assert list(read["flags"]) == list(grid_flags())
    assert {k: tuple(v) for k, v in read["flags"].items()} == grid_flags()
    assert read["datasets"] == data.names()
    assert read["constants"] == [list(runner.COMPILE_MODES), list(sweep.BACKENDS), checks.MIN_DRAWS,
                                 checks.FAMILY_ALPHA, sources.CACHE_ENV, sources.DEFAULT_CACHE]


@pytest.mark.parametrize("command", ["", "run", "screen", "check", "report", "fetch-data"])
def test_the_light_parsers_help_is_the_registries(command, monkeypatch):
    """Each command's parser built from the source (a fresh process) has the help it has with every registry
    imported (this process: cli/catalog.py then asks the registries)."""
    import json
    from estibench import estimators, studies  # noqa: F401 - imported: the catalog asks them
    from estibench.cli import parsers
    code = ("import json, sys; from estibench.cli import parsers; "
            f"print(json.dumps(parsers.parser({command!r}).format_help()))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "100"})
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("COLUMNS", "100")
    assert json.loads(done.stdout) == parsers.parser(command).format_help()


def test_fetch_data_parser_is_the_data_packages():
    """fetch-data's parser lives in estibench.data.cli, whose package imports torch; cli/parsers.py builds the same
    one without it."""
    from estibench.cli import parsers
    from estibench.data import cli as data_cli
    assert parsers.fetch_data_parser().format_help() == data_cli._parser().format_help()


def test_the_run_and_screen_modules_parse_with_the_light_parsers():
    from estibench.cli import parsers, run, screen
    assert run.parser("run").format_help() == parsers.run_parser("run").format_help()
    assert screen.parser is parsers.screen_parser


def test_an_in_process_study_is_in_the_help():
    """A module already imported is asked, not its source: a study registered in this process shows in --help."""
    from estibench import studies
    from estibench.cli import catalog
    gmm = studies.get("gmm")
    studies.REGISTRY.register("zz_help_probe")(lambda: __import__("dataclasses").replace(
        gmm, name="zz_help_probe", suites={"zz_probe_suite": gmm.suites["default"]}))
    try:
        assert "zz_probe_suite" in catalog.suite_names()
    finally:
        studies.unregister("zz_help_probe")


def test_errors_stay_one_line():
    for args, expected in ((["chek", "vimco"], "did you mean check?"),
                           (["--iterations", "3e3"], "did you mean 3000?")):
        done = subprocess.run([sys.executable, "run_all.py", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.splitlines()) == 1 and expected in done.stderr, done.stderr
        assert done.stdout == ""


def test_the_harness_package_imports_its_names_when_used():
    """harness/__init__.py imports no module until a name is asked for; the names it exports are the same."""
    harness = importlib.import_module("estibench.harness")
    from estibench.harness import exact, gradients, runner
    for name in harness.__all__:
        module = {"exact": exact, "gradients": gradients, "runner": runner}[harness._EXPORTS[name]]
        assert getattr(harness, name) is getattr(module, name)
    with pytest.raises(AttributeError):
        harness.no_such_name  # noqa: B018
