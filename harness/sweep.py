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
* Ctrl-C (SIGINT) and SIGTERM stop a sweep cleanly: a cell being written is written first, the
  run row is marked ``interrupted``, the cells' claims are released, worker processes end, and the
  command line prints one line and exits with 130 or 143.  Workers also exit by themselves within
  about a second when their driver dies (even by SIGKILL), so no idle pool outlives it.
* Two runs of the same sweep on one folder split the work: each claims a cell before computing it
  (:meth:`harness.store.Store.claim`, a lease renewed while the run lives) and waits at the end for
  the cells the other is computing, so every cell is computed once and both runs end with all of them.
  A run's write checks in its own transaction that the run still holds the claim and that no other run
  finished the cell meanwhile (a run stopped past its lease whose cell was taken over): otherwise its
  result is discarded with one line, and the other run's row stays.
* A dead worker costs only its own cell.  With loky and ``jobs`` > 1 the driver dispatches cells to a
  process pool itself, at most ``jobs`` in flight, so it always knows which cells were in flight.  When a
  worker process dies (the out-of-memory killer, a segfault, ``os._exit`` in a plug-in) loky breaks the
  pool and every cell in flight in it fails with ``TerminatedWorkerError``, the culprit and the healthy
  ones alike, and nothing tells them apart.  So the results that came back before are stored, the broken
  pool is dropped and each cell that was in flight becomes a *suspect*: it is rerun alone, in a fresh
  one-worker process of its own (suspects first, still ``jobs`` cells at a time; a new pool takes the
  rest).  A suspect that finishes is stored like any cell (its first attempt: a healthy neighbour is never
  marked failed); one whose own process dies is the culprit, stored ``failed`` with the reason ("its
  worker process died (…)"), printed on one line like any failed cell and retried by the next run.  A
  cell costs at most one rerun, so the sweep always ends.  (With ``--jobs 1`` cells run in the driver's
  own process, as before; the dask and Ray backends restart their pool up to ``worker_restarts`` times.)

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
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from typing import Callable, Iterable, List, Optional

import torch

from .runner import CONFIG_VERSION, Cell, CellResult, machine_description, train_cell
from .store import LEASE_S, Store, StoreBusyError, StoreError, host_name, pid_alive, repeated_row
from .task import task_class

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


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM arrived; ``signum`` says which.  A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


_signal_state = {"installed": False, "critical": 0, "pending": None}


def _on_signal(signum, frame):
    if _signal_state["critical"]:
        _signal_state["pending"] = signum  # raised when the write in progress has committed
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals():
    """Turn SIGINT and SIGTERM into :class:`Interrupted` in the main thread (elsewhere: nothing)."""
    if threading.current_thread() is not threading.main_thread() or _signal_state["installed"]:
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _signal_state.update(installed=True, critical=0, pending=None)
    try:
        for s in old:
            signal.signal(s, _on_signal)
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        _signal_state.update(installed=False, critical=0, pending=None)


@contextlib.contextmanager
def critical():
    """A stretch (a store write) that a signal must not cut: the signal is raised when it ends."""
    _signal_state["critical"] += 1
    try:
        yield
    finally:
        _signal_state["critical"] -= 1
        pending = _signal_state["pending"]
        if pending is not None and not _signal_state["critical"] and _signal_state["installed"]:
            _signal_state["pending"] = None
            raise Interrupted(pending)


_watchdog = {"pid": None}


def _watch_driver(driver_pid: int, poll_s: float = 0.5) -> None:
    """In a worker process: exit at once when the driver process is gone (killed, even by SIGKILL),
    instead of idling as an orphan; ignore Ctrl-C (the driver handles it and ends the workers)."""
    if driver_pid == os.getpid() or _watchdog["pid"] == driver_pid:
        return
    _watchdog["pid"] = driver_pid
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread of the worker
        pass

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent or not pid_alive(driver_pid):
                os._exit(1)

    parent = os.getppid()
    threading.Thread(target=watch, name="estibench-driver-watchdog", daemon=True).start()


def run_one(cell: Cell, threads: Optional[int] = 1, progress: bool = False,
            driver_pid: Optional[int] = None) -> CellResult:
    """Worker entry point: never raises for a failing cell (returns it as ``failed``).  ``driver_pid``
    (loky workers): the driver whose death ends this process."""
    if driver_pid is not None:
        _watch_driver(driver_pid)
    if threads:
        torch.set_num_threads(threads)
    used = torch.get_num_threads()
    started = time.perf_counter()
    try:
        result = train_cell(cell, task_class(cell.task), progress=progress)
    except Exception:  # noqa: BLE001 - recorded with its traceback, retried on the next run
        result = CellResult(cell, [], time.perf_counter() - started, float("nan"), cell.device,
                            status="failed", error=traceback.format_exc())
    repeated = repeated_row((s, i, m) for s, i, m, _ in result.rows)
    if repeated is not None:  # the store keeps one row per (seed, iteration, metric): a bug in the task
        result = CellResult(cell, [], result.wall_s, float("nan"), result.device, status="failed",
                            error=f"{repeated} (a bug in the study's task; none of the cell's rows were stored)")
    result.threads = used
    return result


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


def check_scheduler(address: str, timeout_s: float = 5.0) -> None:
    """One-line error (:class:`ValueError`) before any work when ``address`` cannot be a running
    dask.distributed scheduler: not an address, an unknown protocol, or nothing answering at it."""
    import socket
    from distributed.comm import registry
    from distributed.comm.addressing import parse_address, parse_host_port
    what = f"--scheduler {address!r}"
    try:
        scheme, location = parse_address(address)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} is not a dask scheduler address ({err}); write tcp://HOST:PORT") from None
    if scheme not in registry.backends:
        raise ValueError(f"{what}: unknown protocol {scheme!r} (known: {', '.join(sorted(registry.backends))}); "
                         f"write tcp://HOST:PORT")
    if scheme not in ("tcp", "tls", "ws", "wss"):
        return  # inproc://, ucx://: nothing to probe from here
    try:
        host, port = parse_host_port(location, 8786)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} is not a dask scheduler address ({err}); write tcp://HOST:PORT") from None
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{what} is not a dask scheduler address (no host name); write tcp://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except socket.gaierror as err:
        raise ValueError(f"{what}: cannot resolve host {host!r} ({err.strerror or err}); "
                         f"start a scheduler (dask scheduler) and pass its address") from None
    except (OSError, ValueError, OverflowError) as err:
        why = "no answer" if isinstance(err, socket.timeout) else (getattr(err, "strerror", None) or str(err))
        raise ValueError(f"{what}: no dask scheduler reachable at {host}:{port} ({why}); start one "
                         f"(dask scheduler) or pass the address of a running one") from None


def worker_death(err: BaseException) -> str:
    """The reason a cell is stored ``failed`` with when its own worker process died while computing it."""
    codes = re.search(r"exit codes? of the workers? (?:are|is) \{([^}]*)\}", str(err))
    how = codes.group(1) if codes else type(err).__name__
    return (f"its worker process died ({how}) while computing this cell alone: killed by the out-of-memory "
            f"killer, a crash in native code (segfault) or an exit in the cell's own code")


def _worker_env(workers: int) -> dict:
    """What joblib's loky backend puts in its workers' environment: thread pools of OpenMP, BLAS and the
    like limited to cpu_count // workers (unless already set), so cells run as they did through joblib."""
    from joblib._parallel_backends import LokyBackend
    from joblib.externals.loky import cpu_count
    default = max(cpu_count() // max(int(workers), 1), 1)
    env = {var: str(os.environ.get(var, default)) for var in LokyBackend.MAX_NUM_THREADS_VARS}
    if LokyBackend.TBB_ENABLE_IPC_VAR not in os.environ:
        env[LokyBackend.TBB_ENABLE_IPC_VAR] = "1"
    return env


def _process_results(cells: List[Cell], jobs: int, threads: Optional[int],
                     admit: Callable[[Cell], bool]) -> Iterable[CellResult]:
    """loky with ``jobs`` > 1: the cells that ``admit`` accepts, at most ``jobs`` in flight, in a pool of worker
    processes; a dead worker costs only its own cell (the module's docstring: suspects rerun alone)."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from joblib.externals.loky.process_executor import BrokenProcessPool, ProcessPoolExecutor
    driver = os.getpid()
    queue, suspects = deque(cells), deque()
    pool = None                # the shared pool, made when a cell needs it
    flight: dict = {}          # future -> (cell, its executor, whether it is alone in it)
    alone: list = []           # one-worker executors of suspects, shut down as their cells end

    def shared() -> "ProcessPoolExecutor":
        nonlocal pool
        if pool is None:
            workers = max(1, min(jobs, len(queue) + 1))
            pool = ProcessPoolExecutor(max_workers=workers, env=_worker_env(jobs))
        return pool

    def drop(executor) -> None:
        nonlocal pool
        if executor is pool:
            pool = None
        try:
            executor.shutdown(wait=False, kill_workers=True)
        except Exception:  # noqa: BLE001 - a broken executor may refuse; its workers are gone anyway
            pass

    try:
        while True:
            while len(flight) < jobs and (suspects or queue):
                isolated = bool(suspects)
                cell = suspects.popleft() if isolated else queue.popleft()
                if not admit(cell):
                    continue
                if isolated:
                    executor = ProcessPoolExecutor(max_workers=1, env=_worker_env(jobs))
                    alone.append(executor)
                else:
                    executor = shared()
                try:
                    future = executor.submit(run_one, cell, threads, False, driver)
                except (BrokenProcessPool, RuntimeError):  # the pool broke since its last result: a new one
                    drop(executor)
                    executor = ProcessPoolExecutor(max_workers=1, env=_worker_env(jobs)) if isolated else shared()
                    future = executor.submit(run_one, cell, threads, False, driver)
                flight[future] = (cell, executor, isolated)
            if not flight:
                return
            done, _ = wait(list(flight), return_when=FIRST_COMPLETED)
            for future in done:
                cell, executor, isolated = flight.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool as err:
                    if not isolated:  # the pool broke: each of its cells in flight is a suspect
                        suspects.append(cell)
                        if executor is pool:  # (the first of them to come back) a new pool for the rest
                            drop(executor)
                            n = 1 + sum(e is executor for _, e, _ in flight.values())
                            codes = re.search(r"\{([^}]*)\}", str(err))
                            say(f"warning: a worker process died ({codes.group(1) if codes else type(err).__name__});"
                                f" the {n} cell(s) in flight in its pool are rerun, each alone in a fresh process, to "
                                f"find the one that died (finished cells are stored)")
                        continue
                    # alone in its process: this cell's worker died
                    result = CellResult(cell, [], float("nan"), float("nan"), cell.device, status="failed",
                                        error=worker_death(err))
                finally:
                    if isolated:
                        drop(executor)
                        alone.remove(executor)
                yield result
    finally:
        for executor in alone + ([pool] if pool is not None else []):
            drop(executor)


def results(cells: List[Cell], jobs: int, threads: Optional[int], backend: str, address: Optional[str],
            progress: bool, admit: Callable[[Cell], bool] = lambda c: True) -> Iterable[CellResult]:
    """Run the cells that ``admit`` accepts (it claims them), each as it is dispatched, and yield
    their results as they finish."""
    if not cells:
        return
    if backend == "loky" and jobs == 1:
        for c in cells:
            if admit(c):
                yield run_one(c, threads, progress)
        return
    if backend == "loky":  # worker processes, even for one cell: a dying cell never takes the driver down
        yield from _process_results(cells, jobs, threads, admit)
        return
    from joblib import Parallel, delayed

    def tasks(chunk):  # (dask, Ray: workers on other machines, no driver to watch)
        for c in chunk:
            if admit(c):
                yield delayed(run_one)(c, threads, False, None)

    with backend_context(backend, address):
        n_jobs = jobs if jobs > 1 else -1
        for return_as in ("generator_unordered", "generator"):
            try:  # results as they finish, so each is stored at once
                parallel = Parallel(n_jobs=n_jobs, return_as=return_as)
            except ValueError:
                continue
            stream = parallel(tasks(cells))
            try:
                yield from stream
            finally:
                stream.close()  # on Ctrl-C or an error: joblib ends the workers
            return
        # backends that cannot stream (Ray's): waves of `jobs` cells, each wave stored when it ends,
        # so a crash loses at most the wave in flight
        wave = max(1, jobs)
        parallel = Parallel(n_jobs=n_jobs)
        for start in range(0, len(cells), wave):
            yield from parallel(tasks(cells[start:start + wave]))


def describe_status(row) -> str:
    if row is None:
        return "todo"
    status, diverged_at, attempts = row
    if status == "diverged":
        return f"diverged at iteration {diverged_at}"
    if status == "failed":
        return f"failed ({attempts} attempt{'s' if (attempts or 1) > 1 else ''}), will retry"
    return status


def _step_cost(cell: Cell) -> float:
    """The estimator's declared ``cost_hint`` × (K + 2): the relative cost of one training step per data point."""
    from estibench import estimators
    return estimators.REGISTRY.factory(cell.estimator).cost_hint * (cell.particles + 2)


def dispatch_order(cells: List[Cell]) -> List[Cell]:
    """The order a sweep starts its cells in: K groups in the order the cells first give them (so an
    interrupted sweep leaves whole columns), and within a group the costliest first by the estimators'
    ``cost_hint`` × (K + 2), so the group's long cells do not start last."""
    order = {k: i for i, k in enumerate(dict.fromkeys(c.particles for c in cells))}
    return sorted(cells, key=lambda c: (order[c.particles], -_step_cost(c)))


def estimated_work(cell: Cell) -> float:
    """A cell's estimated work in arbitrary units, for the log-mode ETA: the cost model of
    :func:`dispatch_order` (``cost_hint`` × (K + 2)) × iterations × seeds × batch size.  Rough (evaluations,
    the model's own cost and the machine are left out); only ratios between the cells of one sweep matter."""
    try:
        step = _step_cost(cell)
    except Exception:  # noqa: BLE001 - an unknown estimator fails in its cell, not in the progress line
        step = cell.particles + 2
    return step * max(cell.iterations, 1) * max(len(cell.seeds), 1) * max(cell.batch_size, 1)


#: environment variable: seconds between log-mode progress lines ("off": none)
PROGRESS_ENV = "ESTIBENCH_PROGRESS_S"
PROGRESS_EVERY_S = 30.0


def progress_interval(environ=None) -> Optional[float]:
    """Seconds between log-mode progress lines, from ``ESTIBENCH_PROGRESS_S`` (default 30; "off": none)."""
    text = (os.environ if environ is None else environ).get(PROGRESS_ENV, "").strip()
    if not text:
        return PROGRESS_EVERY_S
    if text.lower() in ("off", "none", "no"):
        return None
    try:
        value = float(text)
        if value >= 0 and value != float("inf"):
            return value
    except ValueError:
        pass
    import warnings
    warnings.warn(f"{PROGRESS_ENV}={text!r} is not a number of seconds ≥ 0 or 'off'; "
                  f"using {PROGRESS_EVERY_S:g} s", stacklevel=2)
    return PROGRESS_EVERY_S


def say(line: str, file=None) -> None:
    """Print one line at once (flushed, so a log shows it), without tearing a tqdm bar on the terminal."""
    from tqdm import tqdm
    file = sys.stdout if file is None else file
    with tqdm.external_write_mode(file=file):
        print(line, file=file, flush=True)


def error_summary(error: Optional[str]) -> str:
    """The exception line of a recorded traceback (the last exception's type and message, on one line)."""
    lines = [l for l in (error or "").rstrip().splitlines() if l.strip()]
    if not lines:
        return "(no traceback recorded)"
    start = len(lines) - 1
    while start > 0 and not lines[start - 1].startswith((" ", "\t", "Traceback ")):
        start -= 1  # a message of several lines: back to the line that names the exception
    text = " ".join(l.strip() for l in lines[start:])
    return text if len(text) <= 300 else text[:299] + "…"


def failed_cell_line(result: CellResult) -> str:
    cell = result.cell
    return (f"cell failed: {cell.model_label()} {cell.label()} K={cell.particles} seeds={len(cell.seeds)}: "
            f"{error_summary(result.error)}")


class LogProgress:
    """Plain progress lines for a log (stdout not a terminal: ``nohup``, SLURM, ``> log``), where tqdm's bars
    are off.  A line is printed when a cell finishes and, from a background thread, while none does, but
    never two within ``every`` seconds of each other (by ``clock``); the first comes ``every`` seconds
    after the start.  It gives cells finished / cells this run computes, the share of estimated work
    (:func:`estimated_work`) finished, the time elapsed and ETA = elapsed × remaining work / finished work.
    Cells in flight (the oldest ``slots`` cells dispatched and not yet back) count as half done; a failed
    cell leaves the work (it stopped early, at an unknown point), a diverged one counts up to its diverging
    iteration; "ETA unknown" until some work has finished."""

    def __init__(self, cells: List[Cell], every: float, slots: Optional[int] = None, file=None,
                 clock: Optional[Callable[[], float]] = None):
        self.every, self.slots, self.file = every, slots, file
        self.clock = clock or time.monotonic
        self.work = {c.key(): estimated_work(c) for c in cells}
        self.total_work = sum(self.work.values())
        self.cells = len(self.work)
        self.finished = self.failed = 0
        self.done_work = 0.0
        self.running: dict = {}  # key -> work, in the order dispatched
        self.lock = threading.Lock()
        self.started = self.last = self.clock()
        self.stop = threading.Event()
        self.thread: Optional[threading.Thread] = None

    # -- events ------------------------------------------------------------------------------------
    def dispatched(self, cell: Cell) -> None:
        with self.lock:
            self.running.pop(cell.key(), None)
            self.running[cell.key()] = self.work.get(cell.key(), 0.0)

    def restarted(self) -> None:
        """The worker pool was restarted: nothing is in flight until cells are dispatched again."""
        with self.lock:
            self.running.clear()

    def taken_by_other_run(self, cell: Cell) -> None:
        """Another run on the folder finished the cell: it is no longer this run's work."""
        with self.lock:
            self.running.pop(cell.key(), None)
            work = self.work.pop(cell.key(), None)
            if work is not None:
                self.total_work -= work
                self.cells -= 1

    def cell_finished(self, result: CellResult) -> None:
        key = result.cell.key()
        with self.lock:
            self.running.pop(key, None)
            work = self.work.get(key, 0.0)
            self.finished += 1
            if result.status == "failed":
                self.failed += 1
                credit = 0.0
            elif result.status == "diverged" and result.diverged_at:
                credit = work * min(1.0, result.diverged_at / max(result.cell.iterations, 1))
            else:
                credit = work
            self.total_work -= work - credit  # what it did not do is not left to do either
            self.done_work += credit
        self.tick()

    # -- output ------------------------------------------------------------------------------------
    def line(self, at: Optional[float] = None) -> str:
        from tqdm import tqdm
        with self.lock:
            at = self.clock() if at is None else at
            elapsed = max(0.0, at - self.started)
            running = list(self.running.values())
            if self.slots is not None:
                running = running[:self.slots]
            credited = self.done_work + sum(running) / 2
            remaining = max(0.0, self.total_work - credited)
            share = self.done_work / self.total_work if self.total_work > 0 else 1.0
            failed = f" ({self.failed} failed)" if self.failed else ""
            text = (f"progress: {self.finished}/{self.cells} cells finished{failed}, "
                    f"{100 * share:.0f}% of estimated work, " + (f"{len(running)} running, " if running else "")
                    + f"elapsed {tqdm.format_interval(elapsed)}, ")
            if self.done_work > 0:
                text += f"ETA {tqdm.format_interval(elapsed * remaining / credited)}"
            else:
                text += "ETA unknown (no cell finished yet)"
        return text

    def tick(self) -> bool:
        """Print a line if ``every`` seconds have passed since the last one (or the start)."""
        at = self.clock()
        with self.lock:
            if at - self.last < self.every:
                return False
            self.last = at
        say(self.line(at), self.file)
        return True

    def _beat(self) -> None:
        while not self.stop.wait(max(0.5, self.every / 4)):
            self.tick()

    def __enter__(self):
        if self.every > 0:  # 0: a line per finished cell, no heartbeat
            self.thread = threading.Thread(target=self._beat, name="estibench-progress", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)


def log_mode(file=None) -> bool:
    """Whether ``file`` (stdout) is not a terminal, so that tqdm's bars stay off and plain lines are wanted."""
    file = sys.stdout if file is None else file
    try:
        return not file.isatty()
    except (AttributeError, ValueError):
        return True


def plan(cells: List[Cell], folder: str) -> List[tuple]:
    """[(cell, status text)] without creating or changing anything (for ``--dry-run``): the store is
    opened read-only, an older schema is read through an in-memory upgrade."""
    from .store import FILENAME
    known, claimed = {}, {}
    if os.path.exists(os.path.join(folder, FILENAME)):
        store = Store(folder, readonly=True)
        known = {k: (s, d, a) for k, s, d, a in
                 store.conn.execute("SELECT key, status, diverged_at, attempts FROM cells")}
        claimed = store.live_claims()  # a dead run's claims (its process gone from this machine) are not
        store.close()                  # "running": a run would take them over at once
    out = []
    for c in cells:
        status = describe_status(known.get(c.key()))
        if c.key() in claimed and status not in ("done",) and not status.startswith("diverged"):
            status = f"running in another run ({claimed[c.key()]})"
        out.append((c, status))
    return out


class _Leases:
    """This run's claims, renewed every quarter lease by a background thread while the run lives."""

    def __init__(self, store: Store, owner: str, lease_s: float):
        self.store, self.owner, self.lease_s = store, owner, lease_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._renew, name="estibench-leases", daemon=True)

    def _renew(self):
        while not self.stop.wait(self.lease_s / 4):
            try:
                self.store.renew_claims(self.owner, self.lease_s)
            except Exception as err:  # noqa: BLE001 - a lapse only lets another run take a cell over
                print(f"estibench: warning: could not renew this run's cell claims ({err})", file=sys.stderr)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


def run_sweep(cells: List[Cell], store: Store, jobs: int = 1, threads: Optional[int] = 1,
              backend: str = "loky", address: Optional[str] = None, force: bool = False,
              progress: bool = True, command: str = "", worker_restarts: int = 2,
              lease_s: float = LEASE_S, poll_s: float = 2.0, log_every: Optional[float] = None) -> dict:
    """Run every cell not yet finished (all of them with ``force``); returns counts by status
    (``done``, ``diverged``, ``failed`` computed here; ``skipped`` finished before; ``by_other_run``
    finished meanwhile by another run on the same folder).

    Each cell is claimed before it is computed (a lease of ``lease_s`` seconds, renewed while this run
    lives); a cell another live run has claimed is left to it, and this run waits (polling every
    ``poll_s``) until that run has stored it, or takes it over if its claim lapses; a result whose cell another
    run took over or finished meanwhile is discarded (one line).  If a worker process dies (killed for memory,
    a segfault) only its own cell is lost, stored ``failed`` (loky; see the module's docstring); with dask or
    Ray the pool is restarted for the cells not yet stored, at most ``worker_restarts`` times, then the error
    propagates (rerun to resume).  On Ctrl-C or SIGTERM
    (:class:`Interrupted`) or any error, the run row records how it ended and the claims are released.

    With ``progress``: tqdm bars where stderr is a terminal (as before), and where stdout is not one (a log),
    a plain :class:`LogProgress` line at most every ``log_every`` seconds (default: from
    :func:`progress_interval`, i.e. ``ESTIBENCH_PROGRESS_S`` or 30 s).  A failed cell prints one line
    (model, estimator, K, the exception line of its traceback) as it is stored, progress or not."""
    finished = set() if force else store.done_keys()
    todo = [c for c in cells if c.key() not in finished]
    started_at = now()
    run_id = store.start_run(started_at=started_at, command=command, git_commit=git_commit(),
                             machine=machine_description(), versions=versions(), backend=backend, jobs=jobs,
                             cells_total=len(cells), threads=threads)
    owner = f"{host_name()}:{os.getpid()}:run{run_id}"
    started = time.time()
    counts = {"done": 0, "diverged": 0, "failed": 0, "by_other_run": 0}
    machine = machine_description()
    remaining = {c.key(): c for c in todo}
    unwritten: List[CellResult] = []
    waiting: dict = {}
    if log_every is None:
        log_every = progress_interval()  # None when "off"
    log = LogProgress(todo, log_every, slots=jobs if backend == "loky" else None) \
        if progress and log_every is not None and log_mode() else None

    def admit(cell: Cell) -> bool:
        holder = store.claim(cell.key(), owner, lease_s, finished_since=started_at if force else None)
        if holder is None:
            waiting.pop(cell.key(), None)
            if log is not None:
                log.dispatched(cell)
            return True
        if holder == "finished":
            counts["by_other_run"] += 1
            if log is not None:
                log.taken_by_other_run(cell)
            remaining.pop(cell.key(), None)
            waiting.pop(cell.key(), None)
        else:
            waiting[cell.key()] = holder
        return False

    def store_result(result: CellResult) -> None:
        with critical():  # written only if this run still holds the claim and no other run finished the cell
            holder = store.write_cell(result.cell, result.rows, result.wall_s, result.sec_per_iter, result.device,
                                      machine, now(), status=result.status, error=result.error,
                                      diverged_at=result.diverged_at, threads=result.threads,
                                      artifacts=result.artifacts, owner=owner,
                                      finished_since=started_at if force else None)
        if holder is not None:  # this run was stopped past its lease and another run took the cell over
            cell = result.cell
            what = f"{cell.model_label()} {cell.label()} K={cell.particles}"
            if holder == "finished":
                counts["by_other_run"] += 1
                remaining.pop(cell.key(), None)
                if log is not None:
                    log.taken_by_other_run(cell)
                say(f"{what}: this run's result was discarded because another run finished the cell meanwhile "
                    f"(this run's claim had lapsed); the stored result is kept")
            else:
                waiting[cell.key()] = holder
                say(f"{what}: this run's result was discarded because another run ({holder}) took the cell over "
                    f"when this run's claim lapsed; waiting for that run to store it")
            return
        counts[result.status] += 1
        remaining.pop(result.cell.key(), None)
        if result.status == "failed":
            say(failed_cell_line(result))
        if log is not None:
            log.cell_finished(result)

    def flush(final: bool = False) -> None:
        while unwritten:
            try:
                store_result(unwritten[0])
            except StoreBusyError:
                if final:
                    raise
                return  # kept in memory; written after the next cell
            unwritten.pop(0)

    status = "failed"
    try:
        with _Leases(store, owner, lease_s), (log or contextlib.nullcontext()):
            restarts, announced = 0, False
            while remaining:
                ran_before = sum(counts[s] for s in ("done", "diverged", "failed"))
                stream = results(list(remaining.values()), jobs, threads, backend, address,
                                 progress and jobs == 1, admit)
                if progress:
                    from tqdm.auto import tqdm
                    stream = tqdm(stream, total=len(remaining), desc="cells", disable=None)  # a terminal only
                try:
                    for result in stream:
                        unwritten.append(result)
                        flush()
                except Exception as err:  # a worker process died (out of memory, segfault): the pool is broken
                    if type(err).__name__ not in ("TerminatedWorkerError", "BrokenProcessPool") \
                            or restarts == worker_restarts:
                        raise
                    restarts += 1
                    if log is not None:
                        log.restarted()
                    print(f"warning: a worker process died ({type(err).__name__}); finished cells are stored, "
                          f"restarting the pool for the {len(remaining)} remaining cells", flush=True)
                    continue
                flush(final=True)
                if not remaining:
                    break
                if not waiting:  # every remaining cell is ours again (a lapsed claim): go round once more
                    continue
                if not announced:
                    holders = ", ".join(sorted(set(waiting.values())))
                    print(f"waiting for {len(waiting)} cell(s) that another run is computing ({holders}); "
                          f"this run takes them over if that run stops", flush=True)
                    announced = True
                if sum(counts[s] for s in ("done", "diverged", "failed")) == ran_before:
                    time.sleep(poll_s)
        status = "finished"
    except Interrupted:
        status = "interrupted"
        raise
    finally:
        cells_run = sum(counts[s] for s in ("done", "diverged", "failed"))
        with critical():
            try:
                store.release_claims(owner)
                store.finish_run(run_id, now(), cells_run, time.time() - started, status=status)
            except StoreError as err:  # e.g. the disk is full: the cells are stored, the run row is not
                print(f"estibench: warning: could not record the end of the run ({err})", file=sys.stderr)
    counts["skipped"] = len(cells) - len(todo)
    return counts


def stored_count(cells: List[Cell], store: Store) -> int:
    """How many of ``cells`` are finished in the store."""
    done = store.done_keys()
    return sum(c.key() in done for c in cells)


def summary_line(counts: dict) -> str:
    return json.dumps(counts)
