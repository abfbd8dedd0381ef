"""Reliability of the files estibench keeps on disk (issue 10): the dataset cache's pinned
checksums and its recovery command, a cache folder that cannot be used (one line, exit 2, no
network), and the report builder's temporary files (stale build folders of killed builds, unique
temporary names for concurrent writers, nothing left behind by a failed write).

No test touches the network: downloads are monkeypatched in-process, and the subprocesses run
with their HTTP(S) proxies pointed at a closed local port."""
import errno
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.error

import numpy as np
import pandas as pd
import pytest

from estibench import data as estidata
from estibench import files
from estibench import reports
from estibench.data import sources
from estibench.studies.gmm import page as gmm_report
from estibench.reports import site

scipy_io = pytest.importorskip("scipy.io")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALTECH = "caltech101-silhouettes"
CALTECH_FILE = "caltech101_silhouettes_28_split1.mat"
STATIC_TRAIN = "binarized_mnist_train.amat"


# --------------------------------------------------------------------------- helpers

def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def write_caltech(path, seed, n_train=4):
    """A small file in Marlin's layout (784 x N rows read column by column)."""
    rng = np.random.default_rng(seed)
    splits = {"train": n_train, "val": 3, "test": 2}
    arrays = {}
    for split, n in splits.items():
        images = (rng.random((n, 28, 28)) < 0.3).astype(float)
        arrays[f"{split}_data"] = np.stack([im.flatten(order="F") for im in images])
    scipy_io.savemat(path, arrays)


def serve(monkeypatch, server):
    """Downloads copy the file of the same name from the folder ``server``."""
    calls = []

    def download(url, dest):
        calls.append(url)
        name = url.rsplit("/", 1)[1]
        if not (server / name).exists():
            raise urllib.error.URLError("not on the test server")
        shutil.copy(server / name, dest)
    monkeypatch.setattr(sources, "_download", download)
    return calls


def no_network(monkeypatch):
    def refuse(url, dest):
        raise AssertionError(f"no download expected, got {url}")
    monkeypatch.setattr(sources, "_download", refuse)


def fresh(cache, name):
    """Forget processed and in-memory copies so the next load re-reads (and re-verifies) files."""
    for path in (cache / name).glob("*.npz"):
        path.unlink()
    estidata.clear_memory_cache()


def offline_env(**extra):
    """The environment for a subprocess that must not reach the network."""
    env = dict(os.environ)
    dead = "http://127.0.0.1:9"
    env.update(http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead, no_proxy="", NO_PROXY="")
    env.pop("PYTHONWARNINGS", None)
    env.update(extra)
    return env


# --------------------------------------------------------------------------- A: pinned checksums

def test_hand_placed_file_without_published_hash_is_used_but_not_pinned(tmp_path, monkeypatch):
    """A wrong hand-placed copy (no published hash) records nothing, so the right copy placed
    later is accepted without deleting anything by hand."""
    assert sources.KNOWN_SHA256[CALTECH_FILE] is None
    cache = tmp_path / "cache"
    folder = cache / CALTECH
    folder.mkdir(parents=True)
    write_caltech(folder / CALTECH_FILE, seed=1, n_train=5)  # the "wrong" copy
    no_network(monkeypatch)
    estidata.clear_memory_cache()
    with pytest.warns(UserWarning, match="NOT verified"):
        ds = estidata.load(CALTECH, cache_dir=cache)
    assert len(ds.train) == 5
    assert not (folder / (CALTECH_FILE + ".sha256")).exists()
    # the right copy replaces it by hand: accepted, still nothing pinned
    write_caltech(folder / CALTECH_FILE, seed=2, n_train=4)
    fresh(cache, CALTECH)
    with pytest.warns(UserWarning, match="NOT verified"):
        ds = estidata.load(CALTECH, cache_dir=cache)
    assert len(ds.train) == 4
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".npz")) == [CALTECH_FILE]


def test_download_without_published_hash_is_pinned_and_enforced(tmp_path, monkeypatch):
    """fetch_file's download path still records the sidecar, and later copies are held to it."""
    server = tmp_path / "server"
    server.mkdir()
    write_caltech(server / CALTECH_FILE, seed=3)
    serve(monkeypatch, server)
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="NOT verified"):
        folder = estidata.fetch(CALTECH, cache_dir=cache)
    sidecar = folder / (CALTECH_FILE + ".sha256")
    assert sidecar.read_text().split()[0] == sha256(server / CALTECH_FILE)
    write_caltech(folder / CALTECH_FILE, seed=4)  # a different copy placed over the pinned one
    fresh(cache, CALTECH)
    with pytest.raises(estidata.DatasetChecksumError):
        estidata.load(CALTECH, cache_dir=cache)


def test_sidecar_mismatch_message_is_one_line_with_the_exact_recovery_command(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    write_caltech(server / CALTECH_FILE, seed=5)
    serve(monkeypatch, server)
    cache = tmp_path / "cache dir"  # a space: the command must quote it
    with pytest.warns(UserWarning):
        folder = estidata.fetch(CALTECH, cache_dir=cache)
    target, sidecar = folder / CALTECH_FILE, folder / (CALTECH_FILE + ".sha256")
    with open(target, "ab") as fh:
        fh.write(b"tampered")
    fresh(cache, CALTECH)
    with pytest.raises(estidata.DatasetChecksumError) as info:
        estidata.load(CALTECH, cache_dir=cache)
    message = str(info.value)
    assert "\n" not in message and str(sidecar) in message
    command = (f"rm {shlex.quote(str(target))} {shlex.quote(str(sidecar))} && python run_all.py "
               f"fetch-data {CALTECH} --cache {shlex.quote(str(cache.resolve()))}")
    assert message.endswith(command), message
    # the command works: its rm part removes both, its fetch-data part fetches a verified copy
    remove, fetch = command.split(" && ")
    subprocess.run(remove, shell=True, check=True)
    assert not target.exists() and not sidecar.exists()
    argv = shlex.split(fetch)
    assert argv[:3] == ["python", "run_all.py", "fetch-data"]
    with pytest.warns(UserWarning, match="recorded"):
        assert estidata.main(argv[2:]) == 0
    fresh(cache, CALTECH)
    assert len(estidata.load(CALTECH, cache_dir=cache).train) == 4


def test_published_mismatch_command_deletes_the_file_only(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    folder = cache / "mnist-static"
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (folder / f"binarized_mnist_{split}.amat").write_text(" ".join(["0"] * 784) + "\n")
    no_network(monkeypatch)
    monkeypatch.setenv(sources.CACHE_ENV, str(cache))  # the default cache: no --cache in the command
    fresh(cache, "mnist-static")
    with pytest.raises(estidata.DatasetChecksumError) as info:
        estidata.load("mnist-static")
    message = str(info.value)
    target = folder / STATIC_TRAIN
    assert "\n" not in message and ".sha256" not in message
    assert message.endswith(f"rm {shlex.quote(str(target.resolve()))} && python run_all.py fetch-data mnist-static")


def test_fetch_data_reports_a_checksum_mismatch_in_one_line(tmp_path, monkeypatch, capsys):
    server = tmp_path / "server"
    server.mkdir()
    write_caltech(server / CALTECH_FILE, seed=6)
    serve(monkeypatch, server)
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning):
        assert estidata.main(["fetch-data", CALTECH, "--cache", str(cache)]) == 0
    target = cache / CALTECH / CALTECH_FILE
    with open(target, "ab") as fh:
        fh.write(b"tampered")
    capsys.readouterr()
    assert estidata.main([CALTECH, "--cache", str(cache)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(("run_all.py fetch-data: error: ", "estibench fetch-data: error: "))
    assert f"&& python run_all.py fetch-data {CALTECH}" in err and "Traceback" not in err
    # a rejected download: one line too, nothing written
    monkeypatch.setitem(sources.KNOWN_SHA256, CALTECH_FILE, "0" * 64)
    target.unlink()
    assert estidata.main([CALTECH, "--cache", str(cache)]) == 2
    lines = capsys.readouterr().err.splitlines()  # "fetching URL -> path" progress, then the error
    assert [l for l in lines if not l.startswith("fetching ")] == lines[-1:]
    assert lines[-1].startswith(("run_all.py fetch-data: error: ", "estibench fetch-data: error: ")) and "0" * 64 in lines[-1]
    assert not target.exists()


# --------------------------------------------------------------------------- B: unusable cache folder

@pytest.mark.parametrize("below", [False, True], ids=["file-as-cache", "file-above-cache"])
def test_fetch_data_with_a_file_as_cache_folder_prints_one_line(tmp_path, below):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    cache = blocker / "sub" if below else blocker
    proc = subprocess.run([sys.executable, "run_all.py", "fetch-data", "mnist-static", "--cache", str(cache)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=offline_env())
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(("run_all.py fetch-data: error: ", "estibench fetch-data: error: ")) and "Traceback" not in proc.stderr
    assert str(blocker) in lines[0] and "not a folder" in lines[0]
    assert "fetching" not in proc.stderr and "download" not in lines[0]  # failed before any download
    assert proc.stdout == "" and blocker.read_text() == "x"


def test_any_os_error_of_the_cache_folder_is_one_line_before_any_download(tmp_path, monkeypatch, capsys):
    """E.g. a read-only file system: creating the temporary download file fails."""
    no_network(monkeypatch)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", kwargs.get("dir"))
    monkeypatch.setattr(sources.tempfile, "mkstemp", read_only)
    assert estidata.main(["mnist-static", "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(("run_all.py fetch-data: error: ", "estibench fetch-data: error: "))
    assert "Read-only file system" in err and str(tmp_path / "cache") in err
    with pytest.raises(estidata.DatasetCacheError, match="Read-only file system"):
        estidata.load("mnist-static", cache_dir=tmp_path / "cache", download=True)
    # an OSError from anywhere below fetch-data (e.g. the embedded set's processing): one line too
    from estibench.data import cli as data_cli

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "cache" / "x"))
    monkeypatch.setattr(data_cli, "fetch", denied)
    assert estidata.main(["mnist5k-bern0", "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(("run_all.py fetch-data: error: ", "estibench fetch-data: error: "))
    assert "Permission denied" in err and "Traceback" not in err


def test_main_cli_with_a_file_as_data_cache_prints_one_line(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    proc = subprocess.run([sys.executable, "run_all.py", "--suite", "sbn", "--dataset", "mnist-static",
                           "--dry-run", "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=offline_env(ESTIBENCH_DATA=str(blocker)))
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith("run_all.py: error: ") and "not a folder" in lines[0], lines[0]


# --------------------------------------------------------------------------- C: report temporary files

def small_cells():
    """A cells frame of one failed cell: a study page and tables, no figures (safe in threads)."""
    return pd.DataFrame([dict(key="k1", study="toy", model="toy", estimator="reinforce", label="reinforce",
                              particles=2, seeds=3, status="failed", error="Traceback\nRuntimeError: boom",
                              wall_s=0.1)])


def build(out):
    return reports.build_site(pd.DataFrame(), small_cells(), pd.DataFrame(), str(out))


def tmp_leftovers(out):
    found = []
    for folder, dirs, names in os.walk(out):
        found += [os.path.join(folder, n) for n in names if n.endswith(".tmp")]
        found += [os.path.join(folder, d) for d in dirs if d.startswith(".report-build-")]
    return found


def test_stale_build_folders_are_removed_and_live_ones_kept(tmp_path, monkeypatch):
    out = tmp_path / "site"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folders = {
            "dead": out / ".report-build-999999999-x",
            "live": out / f".report-build-{sleeper.pid}-y",
            "dead_here": out / f".report-build-999999999@{site._host_tag()}-z",
            "old_style_old": out / ".report-build-abc123",
            "old_style_young": out / ".report-build-def456",
            "other_host_young": out / ".report-build-999999999@otherhost-w",
        }
        for folder in folders.values():
            folder.mkdir()
            (folder / "index.html").write_text("half a build")
        hours_ago = time.time() - 2 * 3600
        os.utime(folders["old_style_old"], (hours_ago, hours_ago))
        (out / ".report-build-a-file").write_text("not a folder: untouched")
        seen = []
        real_install = site._install
        monkeypatch.setattr(site, "_install", lambda tmp, o: (seen.append(os.path.basename(tmp)),
                                                             real_install(tmp, o)))
        build(out)
        assert seen and seen[0].startswith(f".report-build-{os.getpid()}@{site._host_tag()}-")
        left = {k for k, f in folders.items() if f.exists()}
        assert left == {"live", "old_style_young", "other_host_young"}
        assert (folders["live"] / "index.html").read_text() == "half a build"
        assert (out / ".report-build-a-file").exists() and (out / "toy" / "index.html").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    build(out)  # its process is gone now
    assert not folders["live"].exists()


def _gate_replace(monkeypatch, basename, parties=2):
    """os.replace onto a file called ``basename`` waits until ``parties`` writers reach it, so
    concurrent writers are certain to overlap there."""
    barrier = threading.Barrier(parties, timeout=30)
    real = os.replace

    def gated(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) == basename:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
        return real(src, dst, *args, **kwargs)
    monkeypatch.setattr(os, "replace", gated)


def _run_threads(fn, n=2):
    errors = []

    def target():
        try:
            fn()
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)
    threads = [threading.Thread(target=target) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_two_builds_into_the_same_folder_at_once_both_succeed(tmp_path, monkeypatch):
    out = tmp_path / "site"
    _gate_replace(monkeypatch, site.MANIFEST)
    errors = _run_threads(lambda: build(out))
    assert errors == []
    manifest = (out / site.MANIFEST).read_text().split()
    assert "index.html" in manifest and os.path.join("toy", "index.html") in manifest
    assert all((out / rel).is_file() for rel in manifest)
    assert tmp_leftovers(out) == []
    assert oct(os.stat(out / site.MANIFEST).st_mode & 0o777) == oct(0o666 & ~files.umask())


def test_two_gmm_reports_into_the_same_folder_at_once_both_succeed(tmp_path, monkeypatch):
    out = tmp_path / "gmm"
    _gate_replace(monkeypatch, "report.md")
    errors = _run_threads(lambda: gmm_report.write_report(pd.DataFrame(columns=["study"]), None, str(out)))
    assert errors == []
    assert "No finished cells yet." in (out / "report.md").read_text()
    assert tmp_leftovers(out) == []
    assert oct(os.stat(out / "report.md").st_mode & 0o777) == oct(0o666 & ~files.umask())


def test_two_build_processes_into_the_same_folder_at_once_both_succeed(tmp_path):
    out = tmp_path / "site"
    script = (
        "import sys, pandas as pd\n"
        "from estibench import reports\n"
        "cells = pd.DataFrame([dict(key='k1', study='toy', model='toy', estimator='reinforce', label='reinforce',"
        " particles=2, seeds=3, status='failed', error='x', wall_s=0.1)])\n"
        "for _ in range(15):\n"
        "    reports.build_site(pd.DataFrame(), cells, pd.DataFrame(), sys.argv[1])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=ROOT, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stderr.close()
    assert [rc for rc, _ in results] == [0, 0], [err[-2000:] for _, err in results]
    assert tmp_leftovers(out) == [] and (out / "toy" / "index.html").is_file()


def _fail_replace(monkeypatch, basename):
    real = os.replace

    def full(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) == basename:
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(dst))
        return real(src, dst, *args, **kwargs)
    monkeypatch.setattr(os, "replace", full)


def test_a_failed_manifest_write_leaves_no_temporary_file_and_the_old_manifest(tmp_path, monkeypatch):
    out = tmp_path / "site"
    build(out)
    before = (out / site.MANIFEST).read_text()
    with monkeypatch.context() as m:
        _fail_replace(m, site.MANIFEST)
        with pytest.raises(OSError) as info:
            build(out)
    assert info.value.errno == errno.ENOSPC
    assert (out / site.MANIFEST).read_text() == before
    assert tmp_leftovers(out) == []


def test_a_failed_gmm_report_write_leaves_no_temporary_file_and_the_old_report(tmp_path, monkeypatch):
    out = tmp_path / "gmm"
    empty = pd.DataFrame(columns=["study"])
    path = gmm_report.write_report(empty, None, str(out), description="first")
    before = open(path, encoding="utf-8").read()
    with monkeypatch.context() as m:
        _fail_replace(m, "report.md")
        with pytest.raises(OSError) as info:
            gmm_report.write_report(empty, None, str(out), description="second")
    assert info.value.errno == errno.ENOSPC
    # a failure while writing the text itself (it cannot be encoded) is cleaned up too
    with pytest.raises(UnicodeEncodeError):
        gmm_report.write_report(empty, None, str(out), description="bad \ud800 text")
    assert open(path, encoding="utf-8").read() == before
    assert tmp_leftovers(out) == []
