"""run_all.py end to end on a tiny budget: store, skip of finished cells, tidy export, report,
and one-line errors (exit status 2, store untouched) for bad input."""
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from estibench.cli import main
from estibench.harness.store import FILENAME, Store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--estimators", "ww,vimco", "--particles", "2,3", "--seeds", "2", "--iterations", "6",
        "--eval-every", "3", "--device", "cpu"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("study"))
    assert main(TINY + ["--out", out]) == 0
    return out


def test_run_writes_store_table_and_report(study):
    table = pd.read_csv(os.path.join(study, "metrics.csv"))
    assert {"model", "estimator", "particles", "seed", "iteration", "metric", "value"} <= set(table.columns)
    assert set(table.estimator) == {"ww", "vimco"} and set(table.particles) == {2, 3}
    assert set(table.seed) == {0, 1} and set(table.iteration) >= {0, 3, 6}
    report = open(os.path.join(study, "gmm", "report.md")).read()
    for heading in ("Fig 4", "Fig 5", "exact gradient", "Final-iteration summary", "findings", "definitions"):
        assert heading in report, heading
    for png in ("fig4_gmm_training.png", "fig5_gmm_hinton_K2.png", "fig5_gmm_hinton_K3.png"):
        assert os.path.getsize(os.path.join(study, "gmm", png)) > 10_000
    assert os.path.exists(os.path.join(study, "index.html"))
    cells = Store(study).cells()
    assert len(cells) == 4 and (cells.status == "done").all()


def test_report_subcommand_rebuilds_from_the_store(study, tmp_path, capsys):
    os.remove(os.path.join(study, "report.md"))
    assert main(["report", "--out", study, "--suite", "default", "--note", "a note"]) == 0
    text = open(os.path.join(study, "report.md")).read()
    assert "a note" in text and "Fig 4" in text
    assert main(["report", "--out", str(tmp_path / "nothing")]) == 2
    assert "no results store" in capsys.readouterr().err


def test_rerun_skips_finished_cells(study, capsys):
    before = pd.read_csv(os.path.join(study, "metrics.csv"))
    assert main(TINY + ["--out", study, "--no-report"]) == 0
    assert "4 already done, 0 to run" in capsys.readouterr().out
    after = pd.read_csv(os.path.join(study, "metrics.csv"))
    pd.testing.assert_frame_equal(before, after)


BAD = [
    (["--estimators", "vimcoo"], "did you mean vimco"),
    (["--estimators", "vimco", "--particles", "1"], "at least 2 particle"),
    (["--particles", "0"], "at least 1"),
    (["--iterations", "0"], "positive"),
    (["--seeds", "0"], "at least 1"),
    (["--suite", "gmmm"], "unknown suite"),
    (["--device", "tpu"], "unknown device"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_one_line_exit_2_and_store_untouched(study, args, message, capsys):
    path = os.path.join(study, FILENAME)
    before = open(path, "rb").read()
    assert main(TINY[:0] + args + ["--out", study]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert open(path, "rb").read() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_requested_without_one(tmp_path, capsys):
    assert main(TINY + ["--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_corrupt_store_is_refused_and_left_as_is(tmp_path, capsys):
    path = tmp_path / FILENAME
    path.write_bytes(b"this is not a database" * 100)
    assert main(TINY + ["--out", str(tmp_path)]) == 2
    assert "not a usable results store" in capsys.readouterr().err
    assert path.read_bytes() == b"this is not a database" * 100


def test_estimator_and_model_options(tmp_path):
    out = str(tmp_path)
    args = ["--estimators", "concrete[final_temperature=1.0],dww[delta=0.1]", "--model-options",
            "init=uniform,guide_hidden=(16,)", "--particles", "2", "--seeds", "1", "--iterations", "2",
            "--eval-every", "2", "--device", "cpu", "--out", out, "--no-report"]
    assert main(args) == 0
    table = pd.read_csv(os.path.join(out, "metrics.csv"))
    assert set(table.label) == {"concrete[final_temperature=1.0]", "dww[delta=0.1]"}
    assert set(table.model) == {"gmm[guide_hidden=(16,),init=uniform]"}


@pytest.mark.parametrize("args,message", [
    (["--estimators", "dww[delta=2]"], "0 < delta < 1"),
    (["--estimators", "ww[foo=1]"], "has no option 'foo'"),
    (["--model-options", "init=sideways"], "unknown init"),
    (["--model-options", "init"], "NAME=VALUE"),
])
def test_bad_options_are_refused(tmp_path, args, message, capsys):
    assert main(args + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_help_lists_every_flag():
    """Every flag of the parser (read from it, so a new flag is covered) is in --help and in docs/cli.md."""
    from estibench.cli.run import parser
    flags = [o for action in parser()._actions for o in action.option_strings if o.startswith("--") and o != "--help"]
    assert len(flags) > 15 and {"--suite", "--estimators", "--dataset", "--arch", "--preset"} <= set(flags)
    out = subprocess.run([sys.executable, "run_all.py", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    reference = open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8").read()
    for flag in flags:
        assert flag in out, flag
        assert flag in reference, f"{flag} is not documented in docs/cli.md"