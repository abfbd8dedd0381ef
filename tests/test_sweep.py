"""The sweep engine survives faults: SIGKILL mid-sweep, diverging cells, failing cells; --force,
--dry-run, the dask backend on a real LocalCluster, and one-line errors for bad input."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from store_helpers import wait_for_cells, write_schema_1_store

from estibench import estimators
from estibench.estimators.base import Estimate, Estimator, batch_loss, sample_guide, wake_theta
from estibench.cli import main
from estibench.harness.definitions import MEASUREMENTS
from estibench.harness.runner import CONFIG_VERSION, Cell, train_cell
from estibench.harness.store import FILENAME, Store
from estibench.studies import TASKS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--particles", "2", "--seeds", "1", "--device", "cpu", "--no-report"]


def rows_by_key(folder):
    conn = sqlite3.connect(os.path.join(folder, FILENAME))
    cells = {k: (s, f) for k, s, f in conn.execute("SELECT key, status, finished_at FROM cells")}
    rows = {}
    for key, seed, it, metric, value in conn.execute("SELECT * FROM metrics ORDER BY key, seed, iteration, metric"):
        rows.setdefault(key, []).append((seed, it, metric, value))
    conn.close()
    return cells, rows


def test_sigkill_mid_sweep_then_rerun_loses_and_duplicates_nothing(tmp_path):
    """A real subprocess runs 8 cells; it is SIGKILLed once 2 cells are in the store; the same
    command then finishes the sweep: the 2 finished cells are skipped (rows and timestamps
    unchanged), each of the 8 cells appears once, and no key has duplicated rows."""
    out = str(tmp_path / "sweep")
    cmd = [sys.executable, "run_all.py", "--estimators", "ww,vimco,reinforce,dww", "--particles", "2,3",
           "--seeds", "1", "--iterations", "300", "--eval-every", "150", "--device", "cpu", "--out", out,
           "--no-report"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_cells(os.path.join(out, FILENAME), 2, proc)
    assert proc.poll() is None, "the sweep finished before it could be killed; make the cells longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before_cells, before_rows = rows_by_key(out)
    assert 2 <= len(before_cells) < 8 and all(s == "done" for s, _ in before_cells.values())
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(before_cells)} already done, {8 - len(before_cells)} to run" in rerun.stdout
    after_cells, after_rows = rows_by_key(out)
    assert len(after_cells) == 8 and all(s == "done" for s, _ in after_cells.values())
    for key in before_cells:
        assert after_cells[key] == before_cells[key] and after_rows[key] == before_rows[key]
    for key, rows in after_rows.items():
        assert len(rows) == len(set((s, i, m) for s, i, m, _ in rows)), "duplicated rows"


# -- test-only estimators, registered for the duration of a test -----------------------------------
class _Base(Estimator):
    """Test-only estimator (not part of the library): WW-like, misbehaving on purpose."""
    latent_types = frozenset({"categorical"})
    calls = 0

    def surrogate(self, model, x, num_particles):
        type(self).calls += 1
        _, log_q, log_p = sample_guide(model, x, num_particles)
        bound = wake_theta(log_p, log_q)
        return Estimate(batch_loss(bound), bound.detach().mean(-1))


class NanAfter(_Base):
    progress = 0.0

    def set_progress(self, fraction):
        self.progress = fraction

    def surrogate(self, model, x, num_particles):
        est = super().surrogate(model, x, num_particles)
        if self.progress >= 25 / 39:  # iteration 26 of 40 on; replicate 1 only (replicate 0 stays finite)
            bad = est.objective.new_tensor([0.0, float("nan")])
            return Estimate(est.loss + bad.sum(), est.objective + bad)
        return est


class Raises(_Base):
    def surrogate(self, model, x, num_particles):
        if type(self).calls >= 3:
            raise RuntimeError("boom: a bug in an estimator")
        return super().surrogate(model, x, num_particles)


@pytest.fixture
def misbehaving():
    registry = estimators.REGISTRY
    saved = dict(registry._entries)
    registry.register("nan_after")(NanAfter)
    registry.register("raises")(Raises)
    NanAfter.calls = Raises.calls = 0
    yield
    registry._entries.clear()
    registry._entries.update(saved)


def test_diverging_cell_is_recorded_with_its_iteration_and_the_sweep_goes_on(tmp_path, misbehaving, capsys):
    out = str(tmp_path)
    args = ["--estimators", "nan_after,ww,raises", "--particles", "2", "--seeds", "2", "--iterations", "40",
            "--eval-every", "10", "--device", "cpu", "--out", out, "--no-report"]
    assert main(args) == 1  # a failed cell makes the exit status non-zero, after the whole sweep ran
    cells = Store(out).cells().set_index("estimator")
    assert cells.loc["ww", "status"] == "done"
    assert cells.loc["nan_after", "status"] == "diverged"
    assert cells.loc["nan_after", "diverged_at"] == 26  # the first non-finite step (1-based iterations)
    assert cells.loc["raises", "status"] == "failed"
    assert "boom: a bug in an estimator" in cells.loc["raises", "error"]
    assert "Traceback" in cells.loc["raises", "error"]
    table = Store(out).table()
    diverged = table[table.estimator == "nan_after"]
    assert diverged.value.notna().all() and diverged.iteration.max() == 20  # last finite evaluation
    assert set(diverged[diverged.metric == "diverged_at"].seed) == {1}
    assert "raises" not in set(table.estimator)  # a failed cell has no rows
    # rerun: done and diverged cells are skipped, the failed one is retried
    Raises.calls = 0
    assert main(args) == 1
    assert "2 already done, 1 to run" in capsys.readouterr().out
    cells = Store(out).cells().set_index("estimator")
    assert cells.loc["raises", "attempts"] == 2


def test_dry_run_lists_status_and_runs_nothing(tmp_path, capsys):
    out = str(tmp_path)
    assert main(["--estimators", "ww,vimco", "--iterations", "4", "--eval-every", "4", "--dry-run", "--out", out]
                + SMALL) == 0
    assert not os.path.exists(os.path.join(out, FILENAME)), "a dry run must not create a store"
    assert "2 would run" in capsys.readouterr().out
    assert main(["--estimators", "ww", "--iterations", "4", "--eval-every", "4", "--out", out] + SMALL) == 0
    capsys.readouterr()
    assert main(["--estimators", "ww,vimco", "--iterations", "4", "--eval-every", "4", "--dry-run", "--out", out]
                + SMALL) == 0
    text = capsys.readouterr().out
    assert "1 already finished, 1 would run" in text and "done" in text and "todo" in text


def test_force_recomputes_finished_cells(tmp_path, capsys):
    out = str(tmp_path)
    args = ["--estimators", "ww", "--iterations", "4", "--eval-every", "4", "--out", out] + SMALL
    assert main(args) == 0
    first = Store(out).cells().finished_at.iloc[0]
    time.sleep(1.1)
    assert main(args + ["--force"]) == 0
    cells = Store(out).cells()
    assert len(cells) == 1 and cells.finished_at.iloc[0] != first and cells.attempts.iloc[0] == 2
    runs = Store(out).runs()
    assert len(runs) == 2 and runs.cells_run.tolist() == [1, 1] and runs.git_commit.notna().all()


def test_dask_local_cluster_matches_loky(tmp_path):
    """A real dask.distributed LocalCluster on loopback (2 worker processes) runs the same sweep as
    loky --jobs 2; the numbers are identical (each cell's randomness comes from its own key)."""
    distributed = pytest.importorskip("distributed")
    common = ["--estimators", "ww,vimco", "--particles", "2,3", "--seeds", "2", "--iterations", "20",
              "--eval-every", "10", "--device", "cpu", "--no-report", "--jobs", "2"]
    loky_out, dask_out = str(tmp_path / "loky"), str(tmp_path / "dask")
    assert main(common + ["--out", loky_out]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", processes=True,
                                  dashboard_address=None) as cluster:
        assert main(common + ["--out", dask_out, "--backend", "dask", "--scheduler", cluster.scheduler_address]) == 0
    strip = lambda t: t[~t.metric.isin(MEASUREMENTS)].sort_values(["label", "particles", "seed", "iteration", "metric"]
                                                                  ).reset_index(drop=True)
    pd.testing.assert_frame_equal(strip(Store(loky_out).table()), strip(Store(dask_out).table()))
    assert Store(dask_out).runs().backend.tolist() == ["dask"]


BAD = [
    (["--lr", "0"], "--lr must be a positive"),
    (["--lr=-1e-3"], "--lr must be a positive"),
    (["--batch-size", "0"], "--batch-size"),
    (["--backend", "dask"], "--scheduler"),
    (["--arch", "linear1"], "does not apply"),
    (["--preset", "rebar"], "does not apply"),
    (["--model", "gmn"], "did you mean gmm"),
    (["--model", "sbn"], "does not fit suite"),
    (["--estimators", "arm"], "does not support categorical"),
    (["--estimators", "vimco", "--particles", "1"], "at least 2 particle"),
    (["--suite", "sbn", "--estimators", "arm", "--dataset", "mnist-static", "--iterations", "1"],
     "mnist-static"),  # a dataset absent offline: names the file, its source and where to put it
    # issue 10: bad settings that once gave Python's own messages or were accepted
    (["--suite", "sbn", "--preset", "rebarr"], "did you mean rebar"),
    (["--model-options", "guide_hidden=(0,)"], "guide_hidden widths must be at least 1"),
    (["--model-options", "guide_hidden=abc"], "guide_hidden='abc' is not a tuple of integers"),
    (["--model-options", "std=-1"], "std (of every cluster) must be a positive"),
    (["--model-options", "std=0"], "std (of every cluster) must be a positive"),
    (["--model-options", "stdd=1"], "has no option 'stdd'"),
    (["--model-options", "std=(1"], "never closed"),
    (["--estimators", "dww[delta=nan]"], "delta='nan' is not a finite number"),
    (["--estimators", "concrete[final_temperature=abc]"], "final_temperature='abc' is not a finite number"),
    (["--estimators", "concrete[final_temperature=1e999]"], "is not a finite number"),
    (["--estimators", "ww[delta=0.1]"], "has no option 'delta'"),
    (["--lr", "inf"], "--lr must be a positive finite number"),
    (["--lr", "nan"], "--lr must be a positive finite number"),
    (["--dataset", "mnist-static"], "does not apply to suite 'default'"),
    (["--estimators", ""], "an empty name"),
    (["--particles", ""], "cannot read --particles"),
    (["--particles", "2,,5"], "no empty item"),
    # issue 11 §6: RBM-prior settings
    (["--suite", "rbm_tiny", "--model-options", "chains=0"], "chains must be at least 1"),
    (["--suite", "rbm_tiny", "--model-options", "gibbs_sweeps=-2"], "gibbs_sweeps must be at least 1"),
    (["--suite", "rbm_tiny", "--model-options", "ais_steps=0"], "at least 2 temperatures"),
    (["--suite", "rbm_tiny", "--model-options", "latent_bits=40"], "at most 16 latent bits"),
    (["--suite", "sbn", "--model-options", "chains=10"], "has no option 'chains'"),
    (["--suite", "sbn", "--groups", "2"], "--groups does not apply to suite 'sbn'"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[m for _, m in BAD])
def test_more_bad_input(tmp_path, args, message, capsys, monkeypatch):
    monkeypatch.setenv("ESTIBENCH_DATA", str(tmp_path / "empty-data-cache"))  # "offline": nothing fetched
    out = str(tmp_path / "out")
    assert main(["--estimators", "ww", "--iterations", "4", "--eval-every", "4", "--out", out] + SMALL) == 0
    path = os.path.join(out, FILENAME)
    before = open(path, "rb").read()
    capsys.readouterr()
    assert main(args + ["--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert open(path, "rb").read() == before


def test_store_of_another_config_version_is_refused(tmp_path, capsys):
    out = str(tmp_path)
    args = ["--estimators", "ww", "--iterations", "4", "--eval-every", "4", "--out", out] + SMALL
    assert main(args) == 0
    conn = sqlite3.connect(os.path.join(out, FILENAME))
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'config_version'", (str(CONFIG_VERSION + 7),))
    conn.close()
    before = open(os.path.join(out, FILENAME), "rb").read()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert f"config version {CONFIG_VERSION + 7}" in err and "\n" not in err
    assert open(os.path.join(out, FILENAME), "rb").read() == before


def test_a_foreign_sqlite_file_is_refused(tmp_path, capsys):
    path = tmp_path / FILENAME
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE other (a INTEGER)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    assert main(["--estimators", "ww", "--iterations", "4", "--out", str(tmp_path)] + SMALL) == 2
    assert "not an estibench results store" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_schema_1_store_is_upgraded_in_place(tmp_path):
    """Stores written before statuses existed (the committed GMM study) still load and report."""
    path = tmp_path / FILENAME
    write_schema_1_store(path, {"config_version": CONFIG_VERSION})
    store = Store(str(tmp_path))
    assert store.done_keys() == {"k"} and len(store.table()) == 1 and "attempts" in store.cells().columns


def test_dispatch_order_keeps_k_groups_and_starts_each_groups_costliest_cells_first():
    """``harness.sweep.dispatch_order`` (what the CLI runs and ``benchmarks/gmm_budget.py`` projects): K groups in
    the order the cells first give them, inside a group by the estimators' declared ``cost_hint`` × (K + 2),
    highest first; the relative order of equal costs is kept."""
    from estibench.harness.sweep import dispatch_order
    names = ["ww", "relax", "reinforce", "concrete"]
    cells = [Cell(study="gmm", model="gmm", estimator=e, particles=k, seeds=(0,), iterations=1)
             for k in (5, 2) for e in names]
    got = [(c.particles, c.estimator) for c in dispatch_order(cells)]
    hint = {e: estimators.REGISTRY.factory(e).cost_hint for e in names}
    want = [(k, e) for k in (5, 2) for e in sorted(names, key=lambda e: -hint[e])]
    assert got == want
    assert got[0] == (5, "relax") and hint["relax"] > max(hint[e] for e in names if e != "relax")
