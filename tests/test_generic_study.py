"""Your model, swept like a built-in: the generic study (``studies/generic/``) trains any model that satisfies the
model contract on the data a user gives (``--data FILE``: ``.npz`` / ``.pt``) or on the model's own samples, stores
and reports it like a built-in study; bad ``--data`` is one line on stderr, exit status 2, before any work, with an
existing store untouched; a study states what it needs from a model (``Study.needs``: the GMM study the true GMM
parameters, ``GMM_TRUTH``) and refuses a model that lacks it in one line."""
import os
import sqlite3

import numpy as np
import pytest
import torch

from estibench import models, studies
from estibench.cli import main
from estibench.harness.store import FILENAME, Store
from estibench.models.protocols import GMM_TRUTH, capabilities
from tiny_models import TinyBernoulli

#: this module as a plug-in: ``--model test_generic_study:Tiny`` (the tests folder is on sys.path: conftest.py)
MODEL = f"{__name__}:Tiny"
FAST = ["--estimators", "vimco,rloo", "--particles", "2", "--seeds", "2", "--iterations", "4", "--eval-every", "2",
        "--device", "cpu"]


class Tiny(TinyBernoulli):
    """A model of one's own, declaring nothing beyond the contract (``tests/tiny_models.py``'s TinyBernoulli: z ∈ {0,1}³,
    x | z ~ Normal(Wz, 1) in R², q(z|x) = σ(MLP(x)); 8 states, so enumerable)."""

    latent_kind = "bernoulli"


#: a suite of one's own that puts Tiny in the GMM study (``--suite test_generic_study:GMM_SUITE``): refused by the
#: study's needs where the cells are planned, not by a cell failing in the store
GMM_SUITE = {"study": "gmm", "model": MODEL, "estimators": ("vimco",), "particles": (2,), "seeds": 1,
             "iterations": 2, "eval_every": 2, "batch_size": 8, "lr": 1e-3}


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture
def data_file(tmp_path):
    rng = np.random.default_rng(0)
    return _npz(tmp_path / "mine.npz", train=rng.normal(size=(60, 2)).astype("float32"),
                test=rng.normal(size=(20, 2)).astype("float32"))


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage:" not in err, err
    assert len(err.splitlines()) == 1 and ": error: " in err, err
    return err


def test_an_own_model_is_swept_stored_and_reported_on_a_file_and_on_its_own_samples(tmp_path, data_file, capsys):
    out = str(tmp_path / "out")
    assert main(["--suite", "generic", "--model", MODEL, "--data", data_file, "--out", out, "--no-report", *FAST]) == 0
    assert main(["--suite", "generic", "--model", MODEL, "--out", out, "--no-report", *FAST]) == 0  # own samples
    capsys.readouterr()
    store = Store(out)
    try:
        cells, table = store.cells(), store.table()
    finally:
        store.close()
    assert len(cells) == 4 and set(cells.status) == {"done"} and set(cells.study) == {"generic"}
    assert set(cells.model) == {MODEL}
    on_file = cells[cells.study__data == os.path.abspath(data_file)]
    assert len(on_file) == 2 and set(on_file.study__data_bytes) == {os.path.getsize(data_file)}
    assert on_file.study__data_sha256.str.len().eq(64).all()
    metrics = set(table.metric)
    assert {"train_ll", "test_ll", "train_elbo", "test_elbo", "test_ll[K=100]", "kl_posterior", "grad_logvar_frozen",
            "grad_logvar_ema", "sec_per_iter", "peak_memory_mb", "test_log_px_exact", "exact_grad/bias_sq",
            "exact_grad/variance"} <= metrics
    for key in cells.key:  # every cell on both seeds, finite numbers
        rows = table[(table.key == key) & (table.metric == "test_ll[K=100]")]
        assert len(rows) == 2 and np.isfinite(rows.value).all()

    # the same command again: nothing to run; the file changed: another cell (path, size and hash are its key)
    assert main(["--suite", "generic", "--model", MODEL, "--data", data_file, "--out", out, "--dry-run", *FAST]) == 0
    assert "0 would run" in capsys.readouterr().out
    _npz(data_file, train=np.ones((61, 2), dtype="float32"))
    assert main(["--suite", "generic", "--model", MODEL, "--data", data_file, "--out", out, "--dry-run", *FAST]) == 0
    assert "2 would run" in capsys.readouterr().out

    assert main(["report", "--out", out]) == 0
    page = open(os.path.join(out, "generic", "report.md"), encoding="utf-8").read()
    assert "## Data" in page and "mine.npz" in page and "the model's own samples" in page
    assert "test_ll[K=100]" in page and os.path.exists(os.path.join(out, "index.html"))


def _bad_inputs(tmp_path):
    rng = np.random.default_rng(1)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    (tmp_path / "notes.txt").write_text("x")
    return {
        "missing": (str(tmp_path / "nope.npz"), "no such file"),
        "no train": (_npz(tmp_path / "a.npz", valid=rng.normal(size=(5, 2))), "needs train"),
        "extra array": (_npz(tmp_path / "b.npz", train=rng.normal(size=(5, 2)), tset=rng.normal(size=(5, 2))),
                        "tset"),
        "wrong width": (_npz(tmp_path / "c.npz", train=rng.normal(size=(5, 3))), "obs_shape (2,)"),
        "splits differ": (_npz(tmp_path / "d.npz", train=rng.normal(size=(5, 2)), test=rng.normal(size=(5, 4))),
                          "same"),
        "non-finite": (_npz(tmp_path / "e.npz", train=np.array([[0.0, np.nan]])), "non-finite"),
        "no rows": (_npz(tmp_path / "f.npz", train=np.zeros((0, 2))), "N ≥ 1"),
        "text array": (_npz(tmp_path / "g.npz", train=np.array([["a", "b"]])), "numbers"),
        "not an npz": (str(tmp_path / "h.npz"), "not a readable .npz"),
        "a list in .pt": (str(tmp_path / "list.pt"), "holds a list"),
        "other suffix": (str(tmp_path / "notes.txt"), "not a .npz"),
        "folder": (str(tmp_path), "a folder"),
        "synthetic": ("gmm-true-model", "synthetic source"),
    }


BAD = ["missing", "no train", "extra array", "wrong width", "splits differ", "non-finite", "no rows", "text array",
       "not an npz", "a list in .pt", "other suffix", "folder", "synthetic"]


@pytest.mark.parametrize("case", BAD)
def test_bad_data_is_one_line_exit_2_before_any_work_and_the_store_is_untouched(case, tmp_path, capsys):
    (tmp_path / "h.npz").write_bytes(b"not a zip file")
    value, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out"
    Store(str(out)).close()
    before = (out / FILENAME).read_bytes()
    listing = sorted(os.listdir(out))
    assert main(["--suite", "generic", "--model", MODEL, "--data", value, "--out", str(out), *FAST]) == 2
    err = _one_line_error(capsys)
    assert "--data" in err and message in err, err
    assert (out / FILENAME).read_bytes() == before and sorted(os.listdir(out)) == listing


def test_data_is_refused_by_a_suite_whose_study_draws_its_own(tmp_path, data_file, capsys):
    assert main(["--suite", "default", "--data", data_file, "--out", str(tmp_path / "out"), *FAST]) == 2
    assert "--data does not apply to suite 'default'" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_the_gmm_study_needs_the_true_gmm_parameters_and_refuses_a_model_without_them(tmp_path, capsys):
    assert studies.get("gmm").needs == ("GMM_TRUTH",)
    assert GMM_TRUTH in capabilities(models.get("gmm"))  # declared (provides), never probed
    assert GMM_TRUTH not in capabilities(Tiny())
    out = tmp_path / "out"
    Store(str(out)).close()
    before = (out / FILENAME).read_bytes()
    for suite in ("gmm", "default"):  # --model on a registered suite
        assert main(["--suite", suite, "--model", MODEL, "--out", str(out), *FAST]) == 2
        err = _one_line_error(capsys)
        assert f"does not fit suite {suite!r}: it needs a model providing the true GMM parameters (GMM_TRUTH)" in err
        assert MODEL in err and "--suite generic" in err
    # a suite of one's own naming the GMM study: refused where the cells are planned, not in the store
    assert main(["--suite", f"{__name__}:GMM_SUITE", "--out", str(out), "--device", "cpu"]) == 2
    err = _one_line_error(capsys)
    assert "it needs a model providing the true GMM parameters (GMM_TRUTH)" in err and "Tiny" in err, err
    assert (out / FILENAME).read_bytes() == before
    with sqlite3.connect(str(out / FILENAME)) as db:
        assert db.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 0
    # the GMM study trains what declares the capability: the GMM and its subclasses
    assert studies.get("gmm").accepts(models.REGISTRY.factory("gmm")) and not studies.get("gmm").accepts(Tiny)
    assert "generic" not in studies.studies_of(Tiny) and studies.get("generic").trains(Tiny)
