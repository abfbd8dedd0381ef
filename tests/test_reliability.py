"""The results store and the command line under hostile conditions: a reader holding the store
open across a sweep, a corrupted file, a full disk, a read-only store, Ctrl-C and SIGTERM, a killed
driver's workers, two identical runs on one folder, and bad input of every kind (one line, exit 2,
nothing saved changed).  Subprocess tests run ``run_all.py`` as a user would; the disk tests use a
real size-limited tmpfs in a private mount namespace (``unshare -rm``) where the machine allows it,
and a faked ENOSPC otherwise.  No test here is statistical."""
import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pandas as pd
import pytest

from store_helpers import wait_for_cells, write_schema_1_store

from estibench.cli import main
from estibench.harness.grammar import UsageError, parse_estimators
from estibench.harness.runner import CONFIG_VERSION, Cell
from estibench.harness.store import FILENAME, Store, StoreBusyError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: 8 small GMM cells, about 1 s each
SWEEP = ["--estimators", "ws,ww,vimco,reinforce", "--particles", "2,5", "--seeds", "2", "--iterations", "150",
         "--eval-every", "50", "--device", "cpu", "--no-report"]
TINY = ["--estimators", "ww", "--particles", "2", "--seeds", "1", "--iterations", "20", "--eval-every", "10",
        "--device", "cpu", "--no-report"]


def run_all(*args, env=None, **kw):
    return subprocess.run([sys.executable, "run_all.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env, **kw)


def one_line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text[-3000:]
    return lines[0]


def marked_env(marker: str) -> dict:
    return {**os.environ, "ESTIBENCH_TEST_MARK": marker}


def processes_with(marker: str) -> list:
    """Live processes whose environment carries ``marker`` (the driver and every worker it started)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read()
            with open(f"/proc/{pid}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in env and state != "Z":
            found.append(int(pid))
    return found


def cells_and_runs(folder: str):
    conn = sqlite3.connect(os.path.join(folder, FILENAME))
    cells = pd.read_sql_query("SELECT * FROM cells", conn)
    runs = pd.read_sql_query("SELECT * FROM runs ORDER BY id", conn)
    conn.close()
    return cells, runs


def tmpfs_available() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d"],
                           capture_output=True)
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(not sys.platform.startswith("linux") or not tmpfs_available(),
                                 reason="needs `unshare -rm` and tmpfs mounts (a private mount namespace)")


def in_namespace(script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a shell script in a private user + mount namespace (mounts vanish with it)."""
    return subprocess.run(["unshare", "-rm", "sh", "-e", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


# -- 1. readers ----------------------------------------------------------------------------------------
def test_a_reader_holding_a_read_transaction_across_a_whole_sweep_stops_nothing(tmp_path):
    """A second process opens the store as soon as it exists and holds a read transaction until the
    sweep ends (about 15 s; SQLite's default busy timeout was 5 s): every cell is stored, rc 0."""
    out = str(tmp_path / "sweep")
    path = os.path.join(out, FILENAME)
    proc = subprocess.Popen([sys.executable, "run_all.py", *SWEEP, "--out", out], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    reader = None
    while time.time() < deadline and reader is None:
        time.sleep(0.05)
        if os.path.exists(path):
            try:
                conn = sqlite3.connect(path, timeout=1, isolation_level=None)
                conn.execute("BEGIN")
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                reader = conn
            except sqlite3.Error:
                continue
    assert reader is not None
    held = time.time()
    stdout, stderr = proc.communicate(timeout=300)
    reader.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # still inside the same transaction
    assert reader.in_transaction and time.time() - held > 5
    reader.execute("COMMIT")
    reader.close()
    assert proc.returncode == 0, stderr[-3000:]
    cells, runs = cells_and_runs(out)
    assert len(cells) == 8 and set(cells.status) == {"done"}
    assert runs.status.tolist() == ["finished"] and runs.cells_run.tolist() == [8]


def test_a_write_waits_for_another_writer_and_keeps_its_result(tmp_path):
    """Another process holds the write lock for 1.5 s: write_cell waits and stores the cell; with a
    patience shorter than the lock it raises StoreBusyError and the store is unchanged."""
    store = Store(str(tmp_path))
    cell = Cell(study="gmm", model="gmm", estimator="ww", particles=2, seeds=(0,), iterations=10)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(1.5); c.execute('COMMIT')"),
        store.path], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    started = time.time()
    store.write_cell(cell, [(0, 10, "model_error", 0.5)], 1.0, 0.1, "cpu", "m", "t")
    assert time.time() - started > 1.0 and store.done_keys() == {cell.key()}
    holder.wait()
    impatient = Store(str(tmp_path), patience_s=0.3)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(8); c.execute('COMMIT')"),
        store.path], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    other = Cell(study="gmm", model="gmm", estimator="ws", particles=2, seeds=(0,), iterations=10)
    with pytest.raises(StoreBusyError):
        impatient.write_cell(other, [(0, 10, "model_error", 0.5)], 1.0, 0.1, "cpu", "m", "t")
    holder.kill()
    holder.wait()
    assert Store(str(tmp_path)).done_keys() == {cell.key()}


# -- 2. corruption -------------------------------------------------------------------------------------
def test_a_store_corrupted_mid_file_is_refused_and_left_byte_identical(tmp_path):
    out = str(tmp_path / "s")
    assert run_all(*SWEEP[:1], "ws,ww", *SWEEP[2:], "--out", out).returncode == 0
    path = os.path.join(out, FILENAME)
    data = bytearray(open(path, "rb").read())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(b ^ 0xA5 for b in data[middle:middle + 4096])
    open(path, "wb").write(bytes(data))
    for args in ([*SWEEP, "--out", out], ["report", "--out", out], [*SWEEP, "--out", out, "--dry-run"]):
        res = run_all(*args)
        assert res.returncode == 2
        assert "damaged" in one_line(res.stderr)
        assert open(path, "rb").read() == bytes(data)
        assert not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0


# -- 3. the estimator grammar --------------------------------------------------------------------------
BAD_SPECS = ["ww,vimco[", "ww]vimco", "ww,[x=1]", "ww,,vimco", "ww,", "dww[delta=0.1", "dww[delta=0.1]]",
             "ww vimco", "dww[delta=0.1]x", "dww[delta=0.1][delta=0.2]", "dww[delta=]", "dww[=0.1]",
             "dww[delta=0.1,delta=0.2]", "dww[delta=0.1,,]", "relax[hidden=(4,4]", "ww,ww", "[x=1]", "'ww'"]


@pytest.mark.parametrize("spec", BAD_SPECS)
def test_an_estimator_list_the_grammar_does_not_accept_is_one_line(spec, tmp_path, capsys):
    assert main(["--estimators", spec, "--out", str(tmp_path / "o"), *TINY[2:]]) == 2
    err = one_line(capsys.readouterr().err)
    assert "--estimators" in err or "options of" in err
    assert not os.path.exists(tmp_path / "o")


def test_the_estimator_grammar_reads_what_it_should():
    assert parse_estimators(" ww , concrete[final_temperature=1.0, initial_temperature=2] ,relax[hidden=(4, 4)]") == [
        ("ww", {}), ("concrete", {"final_temperature": 1.0, "initial_temperature": 2}), ("relax", {"hidden": (4, 4)})]
    assert parse_estimators("estibench.examples.constant_baseline:ConstantBaseline,dww[delta=0.1]") == [
        ("estibench.examples.constant_baseline:ConstantBaseline", {}), ("dww", {"delta": 0.1})]
    assert parse_estimators("rebar[variant=relax_code],rebar[variant=rebar_code]") == [
        ("rebar", {"variant": "relax_code"}), ("rebar", {"variant": "rebar_code"})]
    with pytest.raises(UsageError, match="never closed"):
        parse_estimators("ww,vimco[")


# -- 4 and 8. one line, exit 2, nothing saved changed: the cases are in tests/test_sweep.py (BAD) ---------------
def test_unusable_output_folders_are_one_line(tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("keep me")
    for out, message in ((str(afile), "is a file, not a folder"), (str(afile / "sub"), "cannot write results"),
                         ("", "--out is empty"),
                         ("/proc/estibench-x", "cannot write results")):
        if out.startswith("/proc") and not os.path.isdir("/proc"):  # (Linux only)
            continue
        res = run_all(*TINY, "--out", out)
        assert res.returncode == 2 and message in one_line(res.stderr), res.stderr
    assert afile.read_text() == "keep me"


@needs_tmpfs
def test_a_read_only_mount_is_one_line_and_a_read_only_store_is_still_readable(tmp_path):
    """On a read-only mount: a run is refused with one line; --dry-run reads the store; a report, which
    must write, is refused with one line.  A store file that is itself read-only (bind-mounted read-only
    in a writable folder) can be dry-run and reported, and stays byte-identical."""
    src = str(tmp_path / "src")
    assert run_all(*TINY, "--out", src).returncode == 0
    ro, rw = str(tmp_path / "ro"), str(tmp_path / "rw")
    os.makedirs(ro)
    shutil.copytree(src, rw)
    before = open(os.path.join(src, FILENAME), "rb").read()
    py = sys.executable
    args = " ".join(TINY)
    script = f"""
mount -t tmpfs -o size=4m tmpfs {ro}; cp {src}/{FILENAME} {ro}/; mount -o remount,ro {ro}
mount --bind {rw}/{FILENAME} {rw}/{FILENAME}; mount -o remount,ro,bind {rw}/{FILENAME}
set +e
{py} run_all.py {args} --out {ro} 2>{tmp_path}/run.err; echo "run $?"
{py} run_all.py {args} --out {ro} --dry-run >{tmp_path}/dry.out 2>&1; echo "dry $?"
{py} run_all.py report --out {ro} 2>{tmp_path}/report.err; echo "report $?"
{py} run_all.py {args} --out {rw} --dry-run >{tmp_path}/dry2.out 2>&1; echo "dry2 $?"
{py} run_all.py report --out {rw} >{tmp_path}/report2.out 2>&1; echo "report2 $?"
cmp {ro}/{FILENAME} {src}/{FILENAME} && echo same-ro
"""
    res = in_namespace(script)
    codes = dict(line.split() for line in res.stdout.splitlines() if line.split()[0] in
                 ("run", "dry", "report", "dry2", "report2"))
    assert codes == {"run": "2", "dry": "0", "report": "2", "dry2": "0", "report2": "0"}, (res.stdout, res.stderr)
    assert "Read-only file system" in one_line((tmp_path / "run.err").read_text())
    assert "1 already finished, 0 would run" in (tmp_path / "dry.out").read_text()
    assert "cannot write the report" in one_line((tmp_path / "report.err").read_text())
    assert "Traceback" not in (tmp_path / "report2.out").read_text()
    assert os.path.exists(os.path.join(rw, "index.html")) and "same-ro" in res.stdout
    assert open(os.path.join(rw, FILENAME), "rb").read() == before


def test_a_dry_run_on_an_old_schema_store_writes_nothing(tmp_path):
    """A schema-1 store is listed by --dry-run and reported through an in-memory upgrade; the file is
    byte-identical afterwards (the next real run upgrades it)."""
    path = tmp_path / FILENAME
    write_schema_1_store(path, {"config_version": CONFIG_VERSION, "model": "gmm"})
    before = path.read_bytes()
    res = run_all(*TINY, "--out", str(tmp_path), "--dry-run")
    assert res.returncode == 0 and "would run" in res.stdout, res.stderr
    store = Store(str(tmp_path), readonly=True)
    assert len(store.table()) == 1 and store.done_keys() == {"k"}
    store.close()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [FILENAME]


# -- 4. full disks --------------------------------------------------------------------------------------
@needs_tmpfs
def test_a_full_disk_stops_the_sweep_with_one_line_and_loses_no_stored_cell(tmp_path):
    """A real 160 KB tmpfs: the sweep stops with one line when a write no longer fits; every cell the
    store holds is intact and complete, no temporary file is left, and after room is made (a larger
    mount) the same command finishes the sweep."""
    disk = str(tmp_path / "disk")
    os.makedirs(disk)
    py = sys.executable
    args = " ".join(SWEEP)
    script = f"""
mount -t tmpfs -o size=160k tmpfs {disk}
set +e
{py} run_all.py {args} --out {disk}/out >{tmp_path}/first.out 2>{tmp_path}/first.err; echo "first $?"
ls -a {disk}/out > {tmp_path}/listing
cp -a {disk}/out {tmp_path}/saved
mount -o remount,size=64m {disk}
{py} run_all.py {args} --out {disk}/out >{tmp_path}/second.out 2>{tmp_path}/second.err; echo "second $?"
cp {disk}/out/{FILENAME} {tmp_path}/final.sqlite
"""
    res = in_namespace(script)
    codes = dict(l.split() for l in res.stdout.splitlines() if l.split()[0] in ("first", "second"))
    assert codes["first"] == "1", (res.stdout, (tmp_path / "first.err").read_text())
    assert "full" in one_line((tmp_path / "first.err").read_text())
    listing = (tmp_path / "listing").read_text().split()
    assert not [n for n in listing if n.endswith(".tmp") or n.startswith(".estibench-probe")], listing
    saved = Store(str(tmp_path / "saved"), readonly=True)
    stored = saved.cells()
    assert set(stored.status) <= {"done"}
    table = saved.table()
    for key in stored.key:  # each stored cell is whole: 2 seeds x 4 evaluations of each metric
        rows = table[table.key == key]
        assert rows.groupby("metric").size().eq(8).all()
    saved.close()
    assert codes["second"] == "0", (tmp_path / "second.err").read_text()
    conn = sqlite3.connect(tmp_path / "final.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM cells WHERE status = 'done'").fetchone()[0] == 8
    conn.close()


def test_enospc_during_the_csv_export_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, capsys):
    out = str(tmp_path)
    assert main([*TINY, "--out", out]) == 0
    csv = os.path.join(out, "metrics.csv")
    before = open(csv).read()

    def full(self, path, *a, **k):
        with open(path, "w") as fh:
            fh.write("partial,")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    capsys.readouterr()
    assert main([*TINY, "--out", out, "--force"]) == 1
    assert "full" in one_line(capsys.readouterr().err)
    assert open(csv).read() == before
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


def test_concurrent_exports_never_collide_or_show_a_truncated_file(tmp_path):
    """Two threads export the same store 10 times each while a third reads metrics.csv: no error, and
    the reader only ever sees a complete file."""
    out = str(tmp_path)
    assert main([*TINY, "--out", out]) == 0
    store_a, store_b = Store(out, readonly=True), Store(out, readonly=True)
    full = open(os.path.join(out, "metrics.csv")).read()
    errors, seen = [], []
    stop = threading.Event()

    def export(store):
        try:
            for _ in range(10):
                store.export_csv()
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    def read():
        while not stop.is_set():
            seen.append(open(os.path.join(out, "metrics.csv")).read() == full)

    threads = [threading.Thread(target=export, args=(s,)) for s in (store_a, store_b)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    assert not errors and seen and all(seen)
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


# -- 5 and 6. signals and orphans ----------------------------------------------------------------------------
@pytest.mark.parametrize("how,status", [("SIGINT-group", 130), ("SIGTERM", 143)])
def test_ctrl_c_and_sigterm_stop_cleanly_and_the_same_command_resumes(tmp_path, how, status):
    """--jobs 2: once 2 cells are stored the driver gets SIGINT (to its whole process group, as a
    terminal's Ctrl-C) or SIGTERM; it exits with 130 / 143 and one line on stderr, the run row says
    ``interrupted``, no worker process outlives it, and the same command then runs only the rest."""
    out = str(tmp_path / "out")
    marker = uuid.uuid4().hex
    cmd = [sys.executable, "run_all.py", *SWEEP, "--jobs", "2", "--out", out]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=marked_env(marker), start_new_session=True)
    wait_for_cells(os.path.join(out, FILENAME), 2, proc)
    if how == "SIGINT-group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr[-3000:]
    line = [one_line(stderr)]
    assert "interrupted by SIG" in line[0] and "run the same command to resume" in line[0]
    deadline = time.time() + 10
    while processes_with(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert not processes_with(marker), "worker processes outlived the interrupted driver"
    cells, runs = cells_and_runs(out)
    stored = int((cells.status == "done").sum())
    assert f"{stored} of 8 cells are stored" in line[0]
    assert runs.status.tolist() == ["interrupted"] and runs.finished_at.notna().all()
    rerun = run_all(*SWEEP, "--out", out)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{stored} already done, {8 - stored} to run" in rerun.stdout
    cells, runs = cells_and_runs(out)
    assert len(cells) == 8 and set(cells.status) == {"done"} and cells.attempts.eq(1).all()
    assert runs.status.tolist() == ["interrupted", "finished"]


def test_workers_exit_when_their_driver_is_killed(tmp_path):
    """SIGKILL of the driver alone (--jobs 2): its loky workers notice within a second or two and exit
    instead of idling as orphans; the next run takes the dead run's claimed cells over at once."""
    out = str(tmp_path / "out")
    marker = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "run_all.py", *SWEEP, "--jobs", "2", "--out", out], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=marked_env(marker))
    wait_for_cells(os.path.join(out, FILENAME), 1, proc)
    assert len(processes_with(marker)) >= 3  # the driver and two workers
    proc.kill()
    proc.wait()
    deadline = time.time() + 15
    while processes_with(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert not processes_with(marker), "loky workers outlived their SIGKILLed driver"
    rerun = run_all(*SWEEP, "--out", out)
    assert rerun.returncode == 0 and "waiting" not in rerun.stdout, rerun.stdout + rerun.stderr[-2000:]
    cells, _ = cells_and_runs(out)
    assert len(cells) == 8 and set(cells.status) == {"done"}


# -- 7. two runs, one folder ----------------------------------------------------------------------------------
def test_two_identical_runs_at_once_compute_each_cell_once(tmp_path):
    """The same command started twice on one folder: both exit 0 with all 8 cells stored, and the two
    runs' computed-cell counts add up to 8 (each cell computed once, attempts 1)."""
    out = str(tmp_path / "out")
    cmd = [sys.executable, "run_all.py", *SWEEP, "--out", out]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    wait_for_cells(os.path.join(out, FILENAME), 0, procs[0])  # the store exists
    procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outputs]
    cells, runs = cells_and_runs(out)
    assert len(cells) == 8 and set(cells.status) == {"done"} and cells.attempts.eq(1).all()
    assert runs.cells_run.sum() == 8 and runs.cells_run.min() >= 1, runs[["id", "cells_run"]]
    assert runs.status.tolist() == ["finished", "finished"]
    assert Store(out, readonly=True).claims().empty


def test_claims_expire_and_a_dead_owner_is_taken_over(tmp_path):
    store = Store(str(tmp_path))
    now = time.time()
    with store.conn:
        store.conn.executemany("INSERT INTO claims VALUES (?, ?, ?, ?, ?)", [
            ("live", "elsewhere:1:run1", "another-host", 1, now + 3600),     # a live lease on another machine
            ("lapsed", "elsewhere:1:run1", "another-host", 1, now - 1),      # its lease ran out
            ("dead", "here:dead:run1", __import__("socket").gethostname(), 2 ** 22 + 12345, now + 3600)])
    assert store.claim("live", "me") == "elsewhere:1:run1"
    assert store.claim("lapsed", "me") is None
    assert store.claim("dead", "me") is None  # its process is gone from this machine
    assert store.claim("fresh", "me") is None and store.claim("fresh", "me") is None  # ours: renewable
    assert store.claim("fresh", "someone") == "me"
    store.release_claims("me")
    assert set(store.claims().key) == {"live"}


# -- 9. threads --------------------------------------------------------------------------------------------------
def test_the_thread_count_is_recorded_with_each_cell_and_run(tmp_path):
    out = str(tmp_path)
    assert main([*TINY, "--out", out, "--threads", "2"]) == 0
    cells, runs = cells_and_runs(out)
    assert cells.threads.tolist() == [2] and runs.threads.tolist() == [2]


# -- 10. issue 26: dead workers, late writers, migrations, unique rows, unusable stores, dead runs ---------------
PLUGINS = '''"""Test-only plug-in estimators, WW-like.  Killer's worker process dies at its first step, as one killed by
the out-of-memory killer or a segfault does; Patient, dispatched beside it, waits at its first step until Killer
has started, so that it is in flight in the same pool when that pool breaks (in the driver both raise)."""
import os
import signal
import time

from estibench.estimators.base import Estimate, Estimator, batch_loss, sample_guide, wake_theta

MARK = os.environ.get("ESTIBENCH_TEST_MARK_FILE", "")


def in_worker():
    if os.getpid() == int(os.environ["ESTIBENCH_TEST_DRIVER_PID"]):
        raise RuntimeError("a test plug-in ran in the driver process")


class Killer(Estimator):
    latent_types = frozenset({"categorical"})

    def surrogate(self, model, x, num_particles):
        in_worker()
        open(MARK, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)


class Patient(Estimator):
    latent_types = frozenset({"categorical"})

    def surrogate(self, model, x, num_particles):
        in_worker()
        deadline = time.time() + 120
        while not os.path.exists(MARK) and time.time() < deadline:
            time.sleep(0.05)
        _, log_q, log_p = sample_guide(model, x, num_particles)
        bound = wake_theta(log_p, log_q)
        return Estimate(batch_loss(bound), bound.detach().mean(-1))
'''


def test_a_worker_killed_mid_cell_costs_only_its_own_cell(tmp_path, monkeypatch, capsys):
    """--jobs 2, two cells in flight in one pool; one's worker process is SIGKILLed (what the OOM killer does),
    which breaks the pool under both: the culprit is stored ``failed`` with the reason, its healthy neighbour
    ``done`` at its first attempt, the exit status is 1 as for any failed cell, and no traceback is printed."""
    (tmp_path / "worker_plugins.py").write_text(PLUGINS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("ESTIBENCH_TEST_DRIVER_PID", str(os.getpid()))
    monkeypatch.setenv("ESTIBENCH_TEST_MARK_FILE", str(tmp_path / "killer-started"))
    out = str(tmp_path / "out")
    killer, patient = "worker_plugins:Killer", "worker_plugins:Patient"
    assert main(["--estimators", f"{killer},{patient}", *TINY[2:], "--jobs", "2", "--out", out]) == 1
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err, printed.err[-3000:]
    cells = Store(out, readonly=True).cells().set_index("estimator")
    assert cells.loc[killer, "status"] == "failed" and "its worker process died" in cells.loc[killer, "error"]
    assert cells.loc[patient, "status"] == "done" and cells.attempts.eq(1).all()
    assert len([l for l in printed.out.splitlines() if "its worker process died" in l]) == 1, printed.out


def _small_cell(estimator="ww"):
    return Cell(study="gmm", model="gmm", estimator=estimator, particles=2, seeds=(0,), iterations=10)


def test_a_late_writer_cannot_overwrite_a_cell_another_run_took_over(tmp_path):
    """Run A's lease lapsed (A was stopped past it) and run B took the cell over: A's write is refused while B
    holds the claim and after B stored the cell, in the write's own transaction, leaving B's row, attempts and
    claims as B left them.  A forced run recomputes a result finished before it started, not one since."""
    a, b = Store(str(tmp_path)), Store(str(tmp_path))
    cell = _small_cell()
    key = cell.key()

    def write(store, owner, value, finished_at="2026-01-02T00:00:00+00:00", **kw):
        return store.write_cell(cell, [(0, 10, "model_error", value)], 1.0, 0.1, "cpu", owner, finished_at,
                                owner=owner, **kw)

    assert a.claim(key, "A", lease_s=-1) is None  # A's lease has already lapsed
    assert b.claim(key, "B") is None              # B takes the cell over
    assert write(a, "A", 1.0) == "B"
    assert key not in a.statuses() and b.claims().owner.tolist() == ["B"]
    assert write(b, "B", 2.0) is None
    assert write(a, "A", 1.0) == "finished"
    stored = a.cells().set_index("key").loc[key]
    assert (stored.machine, stored.attempts) == ("B", 1) and a.table().value.tolist() == [2.0] and a.claims().empty
    # --force: B's result predates the forced run's start, so it is recomputed; a result stored since is kept
    assert write(a, "A", 3.0, finished_since="2026-01-03T00:00:00+00:00",
                 finished_at="2026-01-03T00:00:05+00:00") is None
    assert a.table().value.tolist() == [3.0]
    assert write(b, "B", 4.0, finished_since="2026-01-03T00:00:00+00:00") == "finished"
    assert a.table().value.tolist() == [3.0] and a.cells().attempts.tolist() == [2]


def test_a_run_whose_cell_another_run_stored_meanwhile_discards_its_result_in_one_line(tmp_path, monkeypatch, capsys):
    from estibench.harness import sweep
    from estibench.harness.runner import CellResult
    store, other = Store(str(tmp_path)), Store(str(tmp_path))
    cell = _small_cell()

    def stopped_past_its_lease(c, threads=1, progress=False, driver_pid=None):
        other.conn.execute("UPDATE claims SET expires_at = 0")  # this run was stopped past its lease ...
        assert other.claim(c.key(), "B") is None                # ... run B took the cell over and stored it
        assert other.write_cell(c, [(0, 10, "model_error", 2.0)], 5.0, 0.5, "cpu", "B's machine", sweep.now(),
                                owner="B") is None
        return CellResult(c, [(0, 10, "model_error", 1.0)], 1.0, 0.1, "cpu")

    monkeypatch.setattr(sweep, "run_one", stopped_past_its_lease)
    counts = sweep.run_sweep([cell], store, progress=False)
    assert (counts["done"], counts["by_other_run"]) == (0, 1)
    line = one_line(capsys.readouterr().out)
    assert "discarded" in line and "another run finished the cell" in line
    stored = store.cells().iloc[0]
    assert (stored.machine, stored.attempts) == ("B's machine", 1) and store.table().value.tolist() == [2.0]
    assert store.claims().empty and store.runs().cells_run.tolist() == [0]


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs in the killed process (the files are copied before it)."""


def test_a_kill_at_any_step_of_a_migration_leaves_a_store_every_reader_and_writer_opens(tmp_path, monkeypatch):
    """An old store (schema 1, with duplicate rows) is upgraded in one transaction: killed before any statement
    of the open, the files on disk (the database and its WAL, copied as the kill leaves them) are either the old
    store or the upgraded one, and a dry run, a report's read and the next run all read every row."""
    import types
    from estibench.harness import store as store_module
    from estibench.harness.sweep import plan
    src = tmp_path / "src"
    src.mkdir()
    write_schema_1_store(src / FILENAME, {"config_version": CONFIG_VERSION, "model": "gmm"})
    conn = sqlite3.connect(src / FILENAME)
    conn.executemany("INSERT INTO metrics VALUES ('k', 0, ?, ?, ?)", [(0, "model_error", 0.5), (1, "log_z", 1.0),
                                                                      (1, "log_z", 1.5)])
    conn.commit()
    conn.close()
    real_connect = sqlite3.connect

    class Dying:
        def __init__(self, conn, folder, at, kill_dir):
            self.conn, self.folder, self.at, self.kill_dir, self.count = conn, folder, at, kill_dir, 0

        def execute(self, *args):
            self.count += 1
            if self.count == self.at:
                os.makedirs(self.kill_dir)
                for name in os.listdir(self.folder):
                    if not name.endswith("-shm"):  # shared memory: rebuilt from the WAL by the next open
                        shutil.copy(os.path.join(self.folder, name), self.kill_dir)
                raise _Killed()
            return self.conn.execute(*args)

        def __getattr__(self, name):
            return getattr(self.conn, name)

    at, states = 0, set()
    while True:
        at += 1
        work, killed = tmp_path / f"work{at}", tmp_path / f"killed{at}"
        shutil.copytree(src, work)
        opened = []
        shim = types.SimpleNamespace(**{**vars(sqlite3), "connect": lambda *a, **k: opened.append(
            Dying(real_connect(*a, **k), str(work), at, str(killed))) or opened[-1]})
        with monkeypatch.context() as m:
            m.setattr(store_module, "sqlite3", shim)
            try:
                Store(str(work)).close()
            except _Killed:
                for c in opened:
                    c.conn.close()
            else:
                break
        ro = Store(str(killed), readonly=True)
        states.add(ro.conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()[0])
        assert ro.done_keys() == {"k"} and ro.claims().empty and ro.artifacts().empty and ro.runs().empty
        assert ro.table().groupby(["iteration", "metric"]).value.mean().to_dict() == {
            (0, "model_error"): 0.5, (1, "log_z"): 1.25}
        assert [status for _, status in plan([_small_cell()], str(killed))] == ["todo"]
        ro.close()
        rw = Store(str(killed))
        assert rw.get_meta("schema_version") == str(store_module.SCHEMA_VERSION) and rw.done_keys() == {"k"}
        assert len(rw.table()) == 3
        rw.close()
    assert at > 20 and states <= {"1", str(store_module.SCHEMA_VERSION)}
    # what an older estibench left when killed between its two upgrade transactions: schema 7 without the
    # tables its second one creates (runs, claims, artifacts) — read through the in-memory upgrade
    partial = tmp_path / "partial"
    shutil.copytree(src, partial)
    conn = sqlite3.connect(partial / FILENAME, isolation_level=None)
    for step in (store_module.schema.upgrade_from_1, store_module.schema.upgrade_from_2,
                 store_module.schema.upgrade_from_3, store_module.schema.upgrade_from_4,
                 store_module.schema.upgrade_from_6):
        step(conn)
    conn.execute("UPDATE meta SET value = '7' WHERE name = 'schema_version'")
    conn.close()
    before = (partial / FILENAME).read_bytes()
    ro = Store(str(partial), readonly=True)
    assert ro.done_keys() == {"k"} and ro.claims().empty and ro.runs().empty and len(ro.table()) == 3
    ro.close()
    assert [s for _, s in plan([_small_cell()], str(partial))] == ["todo"] and (partial / FILENAME).read_bytes() == before
    assert Store(str(partial)).get_meta("schema_version") == str(store_module.SCHEMA_VERSION)


def test_each_cell_seed_iteration_and_metric_has_one_row(tmp_path):
    """A write with two rows for one (seed, iteration, metric) is refused whole, and the store's own unique
    index refuses a second row.  An older store is upgraded by reading a group of equal rows once and keeping
    every value of a group that differs (the first in ``metrics``, the others in ``metric_repeats``), so that
    every mean over a seed's rows stays what it was; reading it read-only upgrades a private copy, the file
    unchanged."""
    store = Store(str(tmp_path / "new"))
    cell = _small_cell()
    with pytest.raises(ValueError, match="model_error.*twice"):
        store.write_cell(cell, [(0, 10, "model_error", 0.5), (0, 10, "model_error", 0.6)], 1.0, 0.1, "cpu", "m", "t")
    assert store.statuses() == {}
    store.conn.execute("INSERT INTO metrics VALUES ('k', 0, 10, 'm', 1.0)")
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("INSERT INTO metrics VALUES ('k', 0, 10, 'm', 2.0)")
    old = tmp_path / "old"
    old.mkdir()
    write_schema_1_store(old / FILENAME, {"config_version": CONFIG_VERSION, "model": "gmm"})
    conn = sqlite3.connect(old / FILENAME)
    conn.executemany("INSERT INTO metrics VALUES ('k', 0, ?, ?, ?)", [(0, "model_error", 0.5), (6, "log_z", 1.0),
                                                                      (6, "log_z", 1.5), (6, "log_z", 1.0)])
    conn.commit()
    raw = conn.execute("SELECT iteration, metric, AVG(value) FROM metrics GROUP BY 1, 2").fetchall()
    conn.close()
    before = (old / FILENAME).read_bytes()
    for readonly in (True, False):
        upgraded = Store(str(old), readonly=readonly)
        table = upgraded.table()
        assert sorted(zip(table.iteration, table.metric, table.value)) == [
            (0, "model_error", 0.5), (6, "log_z", 1.0), (6, "log_z", 1.0), (6, "log_z", 1.5)]
        means = table.groupby(["iteration", "metric"]).value.mean()
        assert {(i, m): v for i, m, v in raw} == {k: v for k, v in means.items()}
        if readonly:
            assert (old / FILENAME).read_bytes() == before
        else:
            assert upgraded.conn.execute("SELECT metric, value FROM metric_repeats ORDER BY rowid").fetchall() == [
                ("log_z", 1.5), ("log_z", 1.0)]
        upgraded.close()


def test_a_published_store_reads_the_same_numbers_with_each_row_once(tmp_path):
    """The committed RBM store held log Z twice at iteration 0 and at the last iteration (the task recorded
    it in two places; schema 8 keeps the second values in ``metric_repeats``): every (cell, seed, iteration,
    metric) mean is the one the raw rows of both tables give, and an exact duplicate row is read once."""
    import gzip
    path = tmp_path / FILENAME
    with gzip.open(os.path.join(ROOT, "published", "rbm", "results.sqlite.gz")) as fh:
        path.write_bytes(fh.read())
    conn = sqlite3.connect(path)
    rows = "metrics"
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'metric_repeats'").fetchone():
        rows = "(SELECT * FROM metrics UNION ALL SELECT * FROM metric_repeats)"
    raw = {(k, s, i, m): v for k, s, i, m, v in conn.execute(
        f"SELECT m.key, seed, iteration, metric, AVG(value) FROM {rows} m JOIN cells c ON c.key = m.key "
        "WHERE c.status IN ('done', 'diverged') GROUP BY 1, 2, 3, 4")}
    assert conn.execute("SELECT COUNT(*) FROM metric_repeats").fetchone()[0] > 0  # (the repeats are kept)
    conn.close()
    table = Store(str(tmp_path), readonly=True).table()
    assert not table.duplicated(["key", "seed", "iteration", "metric", "value"]).any()
    means = table.groupby(["key", "seed", "iteration", "metric"]).value.mean()
    assert len(means) == len(raw) and all(means[k] == v for k, v in raw.items())


@pytest.mark.parametrize("args,words", [
    (["--backend", "dask", "--scheduler", "not an address"], "not an address"),
    (["--backend", "dask", "--scheduler", "tcp://127.0.0.1:1"], "127.0.0.1:1"),
    (["--scheduler", "tcp://127.0.0.1:8786"], "--backend dask"),
], ids=["not-an-address", "unreachable", "without-dask"])
def test_a_scheduler_that_cannot_be_used_is_one_line_before_any_work(args, words, tmp_path, capsys):
    pytest.importorskip("distributed")
    out = tmp_path / "o"
    assert main([*TINY, *args, "--out", str(out)]) == 2
    assert words in one_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize("tamper,words", [
    ("UPDATE meta SET value = 'seven' WHERE name = 'schema_version'", "schema_version"),
    ("INSERT OR REPLACE INTO meta VALUES ('config_version', 'x1')", "config_version"),
    ("UPDATE cells SET config = '{not json'", "configuration"),
], ids=["schema-version", "config-version", "config"])
def test_a_store_with_unreadable_versions_or_configs_is_refused_and_left_byte_identical(tamper, words, tmp_path,
                                                                                       capsys):
    out = str(tmp_path)
    store = Store(out)
    store.write_cell(_small_cell(), [(0, 10, "model_error", 0.5)], 1.0, 0.1, "cpu", "m", "t")
    store.close()
    conn = sqlite3.connect(os.path.join(out, FILENAME))
    conn.execute(tamper)
    conn.commit()
    conn.execute("PRAGMA journal_mode=DELETE")  # no side files: the folder holds the one file
    conn.close()
    before = open(os.path.join(out, FILENAME), "rb").read()
    for argv in ([*TINY, "--out", out], [*TINY, "--out", out, "--dry-run"], ["report", "--out", out]):
        assert main(argv) == 2
        assert words in one_line(capsys.readouterr().err)
        assert open(os.path.join(out, FILENAME), "rb").read() == before and os.listdir(out) == [FILENAME]


DEAD_PID = 2 ** 22 + 12345  # above Linux's largest process id: no such process


def test_a_killed_runs_row_is_marked_and_its_claims_are_not_shown_as_running(tmp_path):
    """A run SIGKILLed on this machine leaves its row ``running`` and its claims: a dry run lists its cells as
    todo (its process is dead, as a claim takes over), a read shows the row ``killed`` without writing, and the
    next open for writing marks it ``killed`` in the file; a live run's row and claims are left alone."""
    from estibench.harness.store import host_name
    from estibench.harness.sweep import plan
    out = str(tmp_path)
    store = Store(out)
    dead = store.start_run(started_at="2026-01-01T00:00:00+00:00", command="run_all.py")
    store.start_run(started_at="2026-01-01T00:00:01+00:00", command="run_all.py")  # this process: alive
    store.conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (DEAD_PID, dead))
    cells = [_small_cell("ww"), _small_cell("ws")]
    store.conn.executemany("INSERT INTO claims VALUES (?, ?, ?, ?, ?)", [
        (cells[0].key(), f"here:{DEAD_PID}:run{dead}", host_name(), DEAD_PID, time.time() + 3600),
        (cells[1].key(), "here:live:run2", host_name(), os.getpid(), time.time() + 3600)])
    store.close()
    assert [s for _, s in plan(cells, out)] == ["todo", "running in another run (here:live:run2)"]
    before = open(os.path.join(out, FILENAME), "rb").read()
    assert Store(out, readonly=True).runs().status.tolist() == ["killed", "running"]
    assert open(os.path.join(out, FILENAME), "rb").read() == before
    Store(out).close()
    conn = sqlite3.connect(os.path.join(out, FILENAME))
    assert [s for (s,) in conn.execute("SELECT status FROM runs ORDER BY id")] == ["killed", "running"]
    conn.close()
