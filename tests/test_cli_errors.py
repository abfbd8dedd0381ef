"""The command line's argument errors (issue 26, items 15 and 16): every argparse error of the run, ``report``,
``check`` and ``screen`` is one line ``PROG: error: ...`` with exit status 2 (no usage block, no traceback);
a comma list that names a value twice, or two specs that make the same cell, is refused (the run would say
"ran N cells" and store fewer); a ``--basket`` member that fits no cell is refused before any work, and one that
fits only some cells is named, with the cells and the reason, in the output."""
import pytest

from estibench.cli import main
from estibench.harness.store import FILENAME, Store

RUN = ["--estimators", "ww", "--particles", "2", "--seeds", "1", "--iterations", "2", "--eval-every", "2",
       "--device", "cpu", "--no-report"]


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert "usage:" not in err and "Traceback" not in err, err
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert ": error: " in err and err.startswith("estibench"), err
    assert captured.out == "", captured.out
    return err


@pytest.fixture
def store_bytes(tmp_path):
    """An existing (empty) store; returns a function giving its bytes."""
    Store(str(tmp_path)).close()
    path = tmp_path / FILENAME
    return lambda: path.read_bytes()


ARGPARSE = [
    (["--seeds", "abc"], "invalid int value: 'abc'"),
    (["--jobs", "two"], "--jobs"),
    (["--compile", "sideways"], "invalid choice"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--out"], "expected one argument"),
    (["report"], "required: --out"),
    (["report", "--out", "{out}", "--bogus"], "unrecognized arguments"),
    (["check"], "required: estimator"),
    (["check", "reinforce", "--draws", "many"], "invalid int value"),
    (["screen"], "required: --model"),
    (["fetch-data", "--cache"], "expected one argument"),
]


@pytest.mark.parametrize("argv,message", ARGPARSE, ids=[" ".join(a) for a, _ in ARGPARSE])
def test_argparse_errors_are_one_line_exit_2(argv, message, tmp_path, capsys, store_bytes):
    before = store_bytes()
    argv = [a.replace("{out}", str(tmp_path)) for a in argv]
    if argv[0] not in ("report", "check", "screen", "fetch-data") and "--out" not in argv:
        argv = argv + ["--out", str(tmp_path)]
    assert main(argv) == 2  # returned, not raised: the in-process main never ends in SystemExit
    assert message in _one_line_error(capsys)
    assert store_bytes() == before


def test_help_still_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "usage:" in capsys.readouterr().out


DUPLICATES = [
    (["--particles", "2,2"], "--particles '2,2' names 2 twice"),
    (["--particles", "2,02"], "names 2 twice"),
    (["--basket", "reinforce,reinforce"], "--basket 'reinforce,reinforce' names 'reinforce' twice"),
    (["--suite", "rbm_tiny", "--groups", "1,1"], "--groups '1,1' names '1' twice"),
    # two specs that make one cell: the preset's variant written out is the preset's cell again
    (["--suite", "sbn", "--preset", "rebar", "--estimators", "rebar,rebar[variant=rebar_code]"], "twice"),
]


@pytest.mark.parametrize("flags,message", DUPLICATES, ids=[" ".join(f) for f, _ in DUPLICATES])
def test_a_value_given_twice_is_refused(flags, message, tmp_path, capsys, store_bytes):
    before = store_bytes()
    assert main(RUN + flags + ["--out", str(tmp_path)]) == 2
    assert message in _one_line_error(capsys)
    assert store_bytes() == before


def test_a_basket_member_that_fits_no_cell_is_refused_before_work(tmp_path, capsys):
    out = tmp_path / "out"
    flags = ["--particles", "1", "--basket", "reinforce,vimco"]
    assert main(RUN[:2] + RUN[4:] + flags + ["--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert "--basket" in err and "vimco" in err and "fits none of the 1 cell" in err and "particle" in err
    assert not out.exists()


def test_a_basket_member_that_fits_some_cells_is_named_with_the_cells_and_why(tmp_path, capsys):
    flags = ["--particles", "1,2", "--basket", "reinforce,vimco", "--dry-run"]
    assert main(RUN[:2] + RUN[4:] + flags + ["--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "--basket" in line]
    assert len(notes) == 1, captured.err
    assert "vimco" in notes[0] and "K=1" in notes[0] and "K=2" not in notes[0] and "particle" in notes[0]
    assert "2 cells" in captured.out


def test_two_parts_that_become_one_cell_are_one_cell(tmp_path, capsys):
    """``--suite sbn --particles 2``: DisARM of the suite's K = 1 part and of its K = 2 part are the same cell once
    K is overridden; it is listed, run and counted once (before: listed twice, "ran N" with N - 1 stored)."""
    argv = ["--suite", "sbn", "--arch", "linear1", "--particles", "2", "--estimators", "disarm", "--dry-run",
            "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    cells = [tuple(line.split()[:3]) for line in lines[:-1]]
    assert len(cells) == len(set(cells)) and lines[-1].startswith(f"{len(cells)} cells"), lines
    assert ("sbn[arch=linear1,dataset=mnist5k-bern0]", "disarm", "K=2") in cells
