"""The command line as a new user meets it (issue 27, item 5): commands named by the first word (``run`` the default
when the first word is a flag), a flag taken only as written, one-line errors that suggest what was meant, a
``--help`` that lists the commands, and grid flags (``--arch``, ``--groups``, ``--dataset``) that keep the parts
of a suite whose model takes them."""
import os
import sys

import pytest

from estibench.cli import run as cli_run
from estibench.cli import main
from estibench.studies.base import Part

DRY = ["--dry-run", "--device", "cpu"]


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1, captured
    assert "usage:" not in captured.err and "Traceback" not in captured.err, captured.err
    return captured.err


def _cells(capsys):
    """The (model, estimator, K) of every cell a dry run listed."""
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].endswith("(dry run: nothing ran)"), lines
    return [tuple(line.split()[:3]) for line in lines[:-1]]


# ------------------------------------------------------------------ a flag only as written, with a suggestion

@pytest.mark.parametrize("argv,meant", [
    (["--estimator", "vimco"], "--estimators"),
    (["--iteration", "3"], "--iterations"),
    (["--estimator=vimco"], "--estimators"),
    (["check", "reinforce", "--draw", "2000"], "--draws"),
    (["report", "--out", "{out}", "--not", "x"], "--note"),
    (["screen", "--model", "gmm", "--draw", "5"], "--draws"),
    (["fetch-data", "mnist5k-bern0", "--cach", "{out}"], "--cache"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_flag_is_taken_only_as_written_and_the_error_names_the_flag_meant(argv, meant, tmp_path, capsys):
    """``--estimator vimco`` was taken as ``--estimators vimco`` by argparse's prefix matching."""
    argv = [a.replace("{out}", str(tmp_path)) for a in argv]
    if argv[0].startswith("-"):
        argv += DRY + ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert "unrecognized arguments" in err and err.rstrip().endswith(f"did you mean {meant}?"), err


# ------------------------------------------------------------------ commands

def test_an_unknown_command_is_one_line_with_the_nearest_command(capsys):
    assert main(["chek", "vimco"]) == 2
    assert _one_line_error(capsys) == "estibench: error: unknown command 'chek'; did you mean check?\n"
    assert main(["sbn"]) == 2  # a suite's name: the flag that runs it
    assert "to run suite sbn: estibench --suite sbn" in _one_line_error(capsys)
    assert main(["xyzzy"]) == 2
    assert "the commands are run, report, check, screen, fetch-data" in _one_line_error(capsys)


def test_run_is_the_command_that_a_first_flag_implies(tmp_path, capsys):
    flags = ["--estimators", "ww", "--particles", "2", *DRY, "--out", str(tmp_path)]
    assert main(flags) == 0
    implied = capsys.readouterr().out
    assert main(["run", *flags]) == 0
    assert capsys.readouterr().out == implied and "1 cells" in implied


def test_help_lists_the_commands_and_each_command_has_its_own_usage(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: estibench [-h]") and "--suite" in out
    epilog = out[out.index("\ncommands"):]
    for command in ("run", "report", "check", "screen", "fetch-data"):
        assert f"\n  {command} " in epilog, command
    for command in ("run", "report", "check", "screen", "fetch-data"):
        assert main([command, "--help"]) == 0
        assert capsys.readouterr().out.startswith(f"usage: estibench {command} "), command


@pytest.mark.parametrize("argv0,name", [("/checkout/run_all.py", "run_all.py"), ("/venv/bin/estibench", "estibench")])
def test_the_usage_line_names_the_program_as_it_was_called(argv0, name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [argv0])
    for command in ("fetch-data", "report", "check", "screen"):
        assert main([command, "--help"]) == 0
        assert capsys.readouterr().out.startswith(f"usage: {name} {command} "), command
    assert main(["fetch-data", "--cache"]) == 2
    assert _one_line_error(capsys).startswith(f"{name} fetch-data: error: ")


# ------------------------------------------------------------------ integers

@pytest.mark.parametrize("argv,says", [
    (["--iterations", "3e3"], "did you mean 3000?"),
    (["--seeds", "5.0"], "did you mean 5?"),
    (["--jobs", "1.5"], "it needs an integer)"),
    (["check", "reinforce", "--draws", "2e3"], "did you mean 2000?"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_an_integer_flag_given_a_float_says_it_needs_an_integer(argv, says, tmp_path, capsys):
    if argv[0].startswith("-"):
        argv = argv + DRY + ["--out", str(tmp_path)]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert "needs an integer" in err and says in err, err


# ------------------------------------------------------------------ grid flags keep the parts whose model takes them

PARTS = [  # the shape of the sbn and rbm suites: the flag's option in some parts' grids, other values in others
    Part(model="sbn", model_grid={"arch": ("linear1", "linear2", "nonlinear"), "dataset": ("bern0",)}),
    Part(model="sbn_tiny", model_grid={"arch": ("linear1", "linear2"), "dataset": ("bern0",)}),
    Part(model="sbn_categorical", model_grid={"arch": ("linear", "nonlinear"), "dataset": ("bern0",)}),
    Part(model="directed", model_grid={"dataset": ("bern0",)}),
]


def _taking(**choices):
    parts = cli_run._parts_taking(PARTS, {o: (f"--{o}", v) for o, v in choices.items()}, "toy")
    return [(p.model, dict(p.model_grid)) for p in parts]


def test_a_grid_flag_keeps_the_parts_that_list_its_values():
    assert _taking() == [(p.model, p.model_grid) for p in PARTS]  # no flag: every part as it is
    assert [m for m, _ in _taking(arch=["linear1"])] == ["sbn", "sbn_tiny"]
    assert _taking(arch=["nonlinear"]) == [("sbn", {"arch": ("nonlinear",), "dataset": ("bern0",)}),
                                           ("sbn_categorical", {"arch": ("nonlinear",), "dataset": ("bern0",)})]
    assert _taking(arch=["linear2", "linear"]) == [
        ("sbn", {"arch": ("linear2",), "dataset": ("bern0",)}), ("sbn_tiny", {"arch": ("linear2",), "dataset": ("bern0",)}),
        ("sbn_categorical", {"arch": ("linear",), "dataset": ("bern0",)})]


def test_a_value_no_part_lists_goes_to_every_part_that_takes_the_option():
    """``--dataset mnist-static`` on a suite that lists only the embedded set: every part with a dataset takes it
    (the model says, when built, whether it can); ``--arch`` leaves out the part whose model has no arch."""
    assert [(m, g["dataset"]) for m, g in _taking(dataset=["static", "bern0"])] == [
        (p.model, ("static", "bern0")) for p in PARTS]
    assert [m for m, _ in _taking(arch=["linear3"])] == ["sbn", "sbn_tiny", "sbn_categorical"]


def test_a_grid_flag_no_part_takes_is_one_usage_error():
    with pytest.raises(cli_run.UsageError, match="--groups applies to no part of suite 'toy'"):
        _taking(groups=[2])


def test_the_readme_example_runs_only_the_parts_with_that_architecture(tmp_path, capsys):
    """``--suite sbn --arch linear1`` stopped with "unknown categorical SBN arch 'linear1'"; ``--arch nonlinear``
    also brought the enumerable sbn_tiny (whose grid is linear1, linear2) and sbn_categorical_tiny (linear)."""
    out = ["--out", str(tmp_path)]
    assert main(["--suite", "sbn", "--arch", "linear1", "--estimators", "reinforce,vimco", *DRY, *out]) == 0
    cells = _cells(capsys)
    assert {m.split("[")[0] for m, _, _ in cells} == {"sbn", "sbn_tiny"}
    assert all("arch=linear1," in m for m, _, _ in cells)
    argv = ["--suite", "sbn", "--arch", "nonlinear", "--estimators", "reinforce,rebar,relax,concrete,nvil"]
    assert main(argv + DRY + out) == 0
    cells = _cells(capsys)
    binary = [c for c in cells if c[0].startswith("sbn[")]
    assert len(binary) == 5 and all(m == "sbn[arch=nonlinear,dataset=mnist5k-bern0]" and k == "K=1"
                                    for m, _, k in binary)
    # reinforce is also one of the categorical SBN's estimators, and its grid lists nonlinear
    assert sorted(set(cells) - set(binary)) == [("sbn_categorical[arch=nonlinear,dataset=mnist5k-bern0]",
                                                 "reinforce", "K=2")]


def test_the_studies_are_read_when_the_cli_needs_them_not_on_import():
    """``estibench.cli.run`` reads the suites and grid flags from the studies when it builds a parser or cells (the
    study base, ``studies/base.py``, comes with the registry; no study's folder is imported before then)."""
    import subprocess
    code = ("import sys; import estibench.cli.run as c; "
            "print(sorted(m for m in sys.modules if m.startswith('estibench.studies.') and m != 'estibench.studies.base')); "
            "print(sorted(c.GRID_FLAGS) == sorted(c.grid_flags()) and 'sbn' in c.SUITES)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["[]", "True"], done.stdout
