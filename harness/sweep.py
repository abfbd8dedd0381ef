"""The sweep engine: a flat list of picklable :class:`~harness.runner.Cell` specs, run in parallel
through joblib (loky by default; an existing dask.distributed or Ray cluster on request), with
the driver alone writing to the results store, one transaction per finished cell.

Fault tolerance
---------------
* Workers rebuild model, estimator and data from the spec; they never touch the store.
* A cell is written only when it has finished (``done``), diverged (``diverged``, with the
  iteration and its last finite metrics) or raised (``failed``, with the traceback).  Killing the
  driver (even with SIGKILL) loses at most the cells in flight: SQLite's journal rolls back a
  half-written transaction, and a rerun skips ``done``/``diverged`` cells and retries ``failed``
  ones.  ``force=True`` recomputes everything (each cell's old rows are replaced in the same
  transaction that writes the new ones, so nothing is lost before its replacement exists).

Backends (joblib's ``parallel_config``): ``loky`` (processes on this machine; one torch thread
per worker unless told otherwise), ``dask`` (``scheduler`` = address of a running
dask.distributed scheduler; needs ``pip install estibench[dask]``), ``ray`` (``address`` of a
running Ray cluster, or "auto"; needs ``pip install estibench[ray]``; Ray's joblib backend cannot stream
results, so cells run in waves of ``jobs`` and each wave is stored as it ends).  Loky starts fresh worker
processes (no fork of a CUDA context), so cells on a GPU share it safely as separate processes.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import time
import traceback
from typing import Iterable, List, Optional

import torch

from .runner import CONFIG_VERSION, Cell, CellResult, machine_description, train_cell
from .store import Store

BACKENDS = ("loky", "dask", "ray")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (head + ("+dirty" if dirty else "")) if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    import joblib
    import numpy
    import pandas
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__, "joblib": joblib.__version__, "config_version": CONFIG_VERSION}


def run_one(cell: Cell, threads: Optional[int] = 1, progress: bool = False) -> CellResult:
    """Worker entry point: never raises for a failing cell (returns it as ``failed``)."""
    from .studies import TASKS
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        return train_cell(cell, TASKS[cell.study], progress=progress)
    except Exception:  # noqa: BLE001 - recorded with its traceback, retried on the next run
        return CellResult(cell, [], time.perf_counter() - started, float("nan"), cell.device,
                          status="failed", error=traceback.format_exc())


@contextlib.contextmanager
def backend_context(backend: str, address: Optional[str]):
    """joblib ``parallel_config`` for the backend, connecting to an existing cluster if asked."""
    from joblib import parallel_config
    if backend == "loky":
        yield None
    elif backend == "dask":
        from dask.distributed import Client
        client = Client(address) if address else Client(processes=False)
        try:
            with parallel_config(backend="dask"):
                yield client
        finally:
            client.close()
    elif backend == "ray":
        import ray
        from ray.util.joblib import register_ray
        register_ray()
        ray.init(address=address or "auto", ignore_reinit_error=True)
        with parallel_config(backend="ray"):
            yield None
    else:  # pragma: no cover - validated by the CLI
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def check_backend(backend: str) -> None:
    """One-line error before any work when the backend's package is missing."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    module = {"dask": "distributed", "ray": "ray"}.get(backend)
    if module:
        try:
            __import__(module)
        except ImportError:
            raise ValueError(f"--backend {backend} needs the {module!r} package: "
                             f"pip install 'estibench[{backend}]'") from None


def results(cells: List[Cell], jobs: int, threads: Optional[int], backend: str, address: Optional[str],
            progress: bool) -> Iterable[CellResult]:
    if not cells:
        return
    if backend == "loky" and jobs == 1:
        for c in cells:
            yield run_one(c, threads, progress)
        return
    from joblib import Parallel, delayed
    with backend_context(backend, address):
        n_jobs = jobs if backend == "loky" else (jobs if jobs > 1 else -1)
        for return_as in ("generator_unordered", "generator"):
            try:  # results as they finish, so each is stored at once
                parallel = Parallel(n_jobs=n_jobs, return_as=return_as)
            except ValueError:
                continue
            yield from parallel(delayed(run_one)(c, threads, False) for c in cells)
            return
        # backends that cannot stream (Ray's): waves of `jobs` cells, each wave stored when it ends,
        # so a crash loses at most the wave in flight
        wave = max(1, jobs)
        parallel = Parallel(n_jobs=n_jobs)
        for start in range(0, len(cells), wave):
            yield from parallel(delayed(run_one)(c, threads, False) for c in cells[start:start + wave])


def describe_status(row) -> str:
    if row is None:
        return "todo"
    status, diverged_at, attempts = row
    if status == "diverged":
        return f"diverged at iteration {diverged_at}"
    if status == "failed":
        return f"failed ({attempts} attempt{'s' if (attempts or 1) > 1 else ''}), will retry"
    return status


def plan(cells: List[Cell], folder: str) -> List[tuple]:
    """[(cell, status text)] without creating or changing anything (for ``--dry-run``)."""
    from .store import FILENAME
    known = {}
    if os.path.exists(os.path.join(folder, FILENAME)):
        store = Store(folder, create=False)
        known = {k: (s, d, a) for k, s, d, a in
                 store.conn.execute("SELECT key, status, diverged_at, attempts FROM cells")}
        store.close()
    return [(c, describe_status(known.get(c.key()))) for c in cells]


def run_sweep(cells: List[Cell], store: Store, jobs: int = 1, threads: Optional[int] = 1,
              backend: str = "loky", address: Optional[str] = None, force: bool = False,
              progress: bool = True, command: str = "", worker_restarts: int = 2) -> dict:
    """Run every cell not yet finished (all of them with ``force``); returns counts by status.
    If a worker process dies (killed for memory, a segfault) the pool is restarted for the cells
    not yet stored, at most ``worker_restarts`` times; then the error propagates (rerun to resume)."""
    finished = set() if force else store.done_keys()
    todo = [c for c in cells if c.key() not in finished]
    run_id = store.start_run(started_at=now(), command=command, git_commit=git_commit(),
                             machine=machine_description(), versions=versions(), backend=backend, jobs=jobs,
                             cells_total=len(cells))
    started = time.time()
    counts = {"done": 0, "diverged": 0, "failed": 0}
    machine = machine_description()
    remaining = {c.key(): c for c in todo}
    for attempt in range(1 + worker_restarts):
        stream = results(list(remaining.values()), jobs, threads, backend, address, progress and jobs == 1)
        if progress:
            from tqdm.auto import tqdm
            stream = tqdm(stream, total=len(remaining), desc="cells")
        try:
            for result in stream:
                store.write_cell(result.cell, result.rows, result.wall_s, result.sec_per_iter, result.device,
                                 machine, now(), status=result.status, error=result.error,
                                 diverged_at=result.diverged_at)
                counts[result.status] += 1
                remaining.pop(result.cell.key(), None)
            break
        except Exception as err:  # a worker process died (out of memory, segfault): the pool is broken
            if type(err).__name__ not in ("TerminatedWorkerError", "BrokenProcessPool") or attempt == worker_restarts:
                store.finish_run(run_id, now(), len(todo) - len(remaining), time.time() - started)
                raise
            print(f"warning: a worker process died ({type(err).__name__}); finished cells are stored, restarting "
                  f"the pool for the {len(remaining)} remaining cells", flush=True)
    store.finish_run(run_id, now(), len(todo), time.time() - started)
    counts["skipped"] = len(cells) - len(todo)
    return counts


def summary_line(counts: dict) -> str:
    return json.dumps(counts)
