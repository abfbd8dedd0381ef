"""The results store: one SQLite file per output folder, one transaction per finished cell.

Cells are keyed by a hash of their configuration (see :func:`harness.runner.Cell.key`).  Only the
driver writes, one transaction per finished cell, so a killed sweep never leaves half a cell.
A cell's ``status`` is

* ``done``      finished; a rerun skips it;
* ``diverged``  its loss or gradients became NaN/inf: ``diverged_at`` is the iteration and its
                rows are the metrics recorded up to the last finite evaluation; a rerun skips it;
* ``failed``    it raised: ``error`` holds the traceback, it has no rows, and a rerun retries it;
* ``superseded`` a cell of the same configuration written by a newer numerics version (the revisions
                the engine and the classes declare: ``harness.runner.numerics_history``) replaced it: its
                rows are kept, but :meth:`cells` and :meth:`table` leave it out, so two numerics never pool.

``artifacts`` holds small binary results a task made at the end of a cell (name, MIME type, bytes; e.g.
the RBM study's prior samples), written in the cell's transaction.  ``runs`` records every invocation
(command, git commit, machine, versions, wall time, counts, its process id and host, and whether it is
``running``, ``finished``, was ``interrupted`` or ``failed``, or was ``killed``: its row still said
``running`` when its process was found gone from this machine).  ``metrics`` holds one row per
(cell, seed, iteration, metric); ``metric_repeats`` holds only what stores older than schema 8 recorded
twice with different values (see below).  :meth:`Store.table` exports every metric
row of done and diverged cells as one tidy pandas table (columns :data:`TABLE_COLUMNS`: study, model,
estimator, label, particles, seed, iteration, metric, value, the cell's key and every setting of the
cell — model name and options, dataset, estimator options, iterations, evaluation interval, batch
size, lr, optimiser, study options, preset, configuration and numerics versions, compile mode — then one
typed column per option: ``model__<option>`` and ``estimator__<option>`` for the effective model and estimator
options, defaults resolved, and ``study__<option>`` for the study's options).  The torch thread
count a cell ran with is recorded beside it (``threads``), not in its identity.

Reliability (each guarantee has a test in ``tests/test_reliability.py``)
-----------------------------------------------------------------------
* **Readers never stop a sweep.**  The file is in SQLite's write-ahead-log mode, so a reader (a
  notebook, ``sqlite3``, a report) holding a read transaction does not block the writer; every write
  is one ``BEGIN IMMEDIATE`` transaction with a busy timeout, retried with back-off for up to
  :data:`WRITE_PATIENCE_S` when another writer holds the lock, and a finished result whose write had
  to wait is kept in memory and written, never dropped.
* **A damaged file is never modified.**  Opening an existing store runs ``PRAGMA quick_check`` before
  anything is written; a file that fails it (or is not an estibench store, or of a newer schema) is
  refused with one line and left byte-identical.
* **Reading changes no byte of the store.**  ``Store(folder, readonly=True)`` (``--dry-run``, ``report``)
  opens the file read-only (a read-only file or mount works); an older schema is upgraded in a private
  in-memory copy, never in place (schema 7, which lacks only what reads do without, is read as it is).  (In a writable folder SQLite may create the empty ``-wal``/``-shm``
  side files of a WAL-mode store; on a read-only folder it reads the file as immutable.)
* **A full disk loses nothing stored.**  A write that fails for lack of space rolls back and raises
  :class:`StoreFullError` (one line); exports go to a unique temporary file in the same folder that is
  removed on failure, so a failed export neither truncates ``metrics.csv`` nor leaves a file behind.
* **Two runs on one folder compute each cell once.**  A run *claims* a cell (table ``claims``) before
  computing it; a claim is a lease of :data:`LEASE_S` seconds that its run renews while it lives, so a
  killed run's claims expire (at once when its process is known dead on this machine) and the next run
  takes those cells over.
* **A late writer cannot overwrite a finished cell.**  A run's write checks, in the write's own
  transaction, that the run still holds the cell's claim (or that nobody does) and that the cell was not
  finished by another run meanwhile (with ``--force``: since this run started); otherwise the result is
  discarded (one line), and the stored row, its attempts and the other run's claim are left as they are.
* **A dead worker costs only its own cell** (``harness.sweep``): a cell whose worker process dies (the
  out-of-memory killer, a segfault) is stored ``failed`` with the reason, every other cell is stored,
  the cells in flight beside it after a rerun alone.
* **An upgrade is all or nothing.**  Opening an older schema upgrades it, creates the new tables and marks
  dead runs in one transaction: a kill at any step leaves either the old store or the new one.  A
  read-only open of a store missing tables (e.g. one left by an older estibench killed between its two
  upgrade transactions) reads it through the in-memory upgrade.
* **One row per (cell, seed, iteration, metric).**  A unique index refuses a second row; a write whose rows
  repeat a (seed, iteration, metric) is refused whole (the sweep's workers record such a cell as failed,
  naming the metric).  Upgrading an older store reads a group of equal rows once and keeps every row of a
  group whose values differ (the first in ``metrics``, the others in ``metric_repeats``, which
  :meth:`Store.table` returns beside it), so that every mean of a seed's rows — what reports show — is
  exactly what it was.  (A schema-7 store read read-only, in place, shows its rows as stored.)
* **Unreadable settings are refused read-only.**  A ``schema_version`` or ``config_version`` that is not an
  integer, or a cell whose configuration is not a JSON object, is refused at open with one line, before
  anything is written (the file byte-identical, no run row).
* **Dead runs are marked.**  Each run row records its process id and host; a ``running`` row whose process
  is gone from this machine is shown ``killed`` by every read and written so by the next open for writing,
  and a dry run shows a dead run's claimed cells as to do, not "running in another run".
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import threading
import time
from typing import Callable, Optional

from estibench.files import pid_alive

from . import schema
from .cells import FINISHED, TABLE_COLUMNS, CellQueries, repeated_row
from .claims import LEASE_S, ClaimQueries
from .errors import StoreBusyError, StoreError, StoreFullError, is_busy, is_full
from .runs import RunQueries, host_name, mark_dead_runs
from .schema import READ_TABLES, SCHEMA, SCHEMA_VERSION, SETTING_COLUMNS, SETTING_TYPES, settings_of

__all__ = ["Store", "StoreError", "StoreFullError", "StoreBusyError", "quick_check", "host_name", "pid_alive",
           "repeated_row", "settings_of", "FILENAME", "BUSY_TIMEOUT_S", "WRITE_PATIENCE_S", "LEASE_S", "FINISHED",
           "SCHEMA", "SCHEMA_VERSION", "READ_TABLES", "SETTING_TYPES", "SETTING_COLUMNS", "TABLE_COLUMNS"]

FILENAME = "results.sqlite"
#: seconds one SQLite call waits for a lock before the retry loop takes over
BUSY_TIMEOUT_S = 5.0
#: seconds a write keeps retrying while another process holds the write lock
WRITE_PATIENCE_S = 600.0


def _uri_path(path: str) -> str:
    from urllib.parse import quote
    return quote(os.path.abspath(path))


def _integer(value) -> Optional[int]:
    """``value`` as an integer when it is one (an int, or text of one, as the meta table stores it), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value)
    return None


def quick_check(conn: sqlite3.Connection, path: str) -> None:
    """Raise :class:`StoreError` unless SQLite's ``PRAGMA quick_check`` finds the file sound."""
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as err:
        what = "is not a usable results store" if "not a database" in str(err) else "is damaged"
        raise StoreError(f"{path} {what} ({err}); it was left as it is: restore it from a copy or "
                         f"use another --out folder") from None
    if rows != ["ok"]:  # (one line: a row may hold several, headed "*** in database main ***")
        lines = [l.strip() for r in rows for l in str(r).splitlines() if l.strip() and not l.startswith("***")]
        raise StoreError(f"{path} is damaged (SQLite integrity check: {lines[0] if lines else rows[0]}); it was "
                         f"left as it is: restore it from a copy or use another --out folder")


class Store(CellQueries, RunQueries, ClaimQueries):
    """One results store.  ``create``: make the folder and file when absent (else a missing store is an
    error); ``readonly``: open for reading only (nothing in the folder changes, an older schema is
    upgraded in memory); ``patience_s``: how long a write retries while another process holds the lock."""

    def __init__(self, folder: str, create: bool = True, readonly: bool = False,
                 patience_s: float = WRITE_PATIENCE_S):
        self.folder = folder
        self.path = os.path.join(folder, FILENAME)
        self.readonly = readonly
        self.patience_s = patience_s
        self.lock = threading.RLock()  # the connection is shared by the sweep's claim and lease threads
        self.conn = None
        if (readonly or not create) and not os.path.exists(self.path):
            raise StoreError(f"no results store at {self.path}")
        if os.path.isdir(self.path):
            raise StoreError(f"{self.path} is a folder, not a results store")
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise StoreError(f"{folder} is a file, not a folder")
        fresh = not os.path.exists(self.path)
        try:
            if readonly:
                self._open_readonly()
                return
            if create:
                os.makedirs(folder, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            self.conn = conn
            version = None if fresh else self._inspect(conn)  # read before writing: a bad file is left as it is
            self._wal(conn)

            def prepare(c):  # one transaction: a kill at any step leaves the old store or the new one
                if version is not None and version < SCHEMA_VERSION:
                    schema.upgrade(c, version)
                schema.create(c)
                mark_dead_runs(c)

            self._transaction(prepare)
        except sqlite3.DatabaseError as err:
            self._close_quietly()
            if is_full(err):
                raise StoreFullError(f"the disk holding {folder} is full ({err}); nothing was written") from None
            raise StoreError(f"{self.path} is not a usable results store: {err}") from None
        except OSError as err:
            self._close_quietly()
            raise StoreError(f"cannot use {folder} for results: {err.strerror or err}") from None
        except StoreError:
            self._close_quietly()
            raise

    # -- opening -----------------------------------------------------------------------------
    def _close_quietly(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:
                pass
            self.conn = None

    def _inspect(self, conn) -> Optional[int]:
        """The schema version of an existing file (None: an empty SQLite file), after the integrity
        check; refuses a damaged, foreign or newer file."""
        quick_check(conn, self.path)
        tables = schema.tables(conn)
        if not tables:
            return None
        if not {"meta", "cells", "metrics"} <= tables:
            raise StoreError(f"{self.path} is an SQLite file but not an estibench results store")
        row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        version = _integer(row[0]) if row else None
        if row and version is None:
            raise StoreError(f"{self.path} is not a usable results store: its schema_version {row[0]!r} is not an "
                             f"integer; it was left as it is")
        if version not in (1, 2, 3, 4, 5, 6, 7, SCHEMA_VERSION):
            raise StoreError(f"{self.path} was written by store schema {version}, this is {SCHEMA_VERSION}")
        self._check_settings(conn)
        return version

    def _check_settings(self, conn) -> None:
        """Refuse (before anything is written) a store whose ``config_version`` is not an integer or a cell
        whose configuration is not a JSON object with integer versions: nothing could read it consistently."""
        row = conn.execute("SELECT value FROM meta WHERE name = 'config_version'").fetchone()
        if row and _integer(row[0]) is None:
            raise StoreError(f"{self.path} is not a usable results store: its config_version {row[0]!r} is not an "
                             f"integer; it was left as it is")
        for key, text in conn.execute("SELECT key, config FROM cells"):
            try:
                config = json.loads(text)
                problem = None if isinstance(config, dict) else "not a JSON object"
            except (TypeError, ValueError) as err:
                problem = f"not JSON ({err})"
            if problem is None:
                bad = [f"{name} {config[name]!r}" for name in ("config_version", "numerics_version")
                       if config.get(name) is not None and _integer(config[name]) is None]
                problem = f"{', '.join(bad)} not an integer" if bad else None
            if problem is not None:
                raise StoreError(f"{self.path} is not a usable results store: the configuration of cell {key} is "
                                 f"{problem}; it was left as it is")

    @staticmethod
    def _wal(conn) -> None:
        """Write-ahead-log mode (persistent in the file): readers and the writer do not block each
        other.  If another process holds a lock right now the store stays in its current mode (the
        retrying writes still cope) and the next open switches it."""
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as err:
            if not is_busy(err):
                raise

    def _open_readonly(self) -> None:
        uri = "file:" + _uri_path(self.path)
        last = None
        for suffix in ("?mode=ro", "?mode=ro&immutable=1"):  # immutable: a read-only folder or mount (WAL)
            conn = sqlite3.connect(uri + suffix, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                break
            except sqlite3.OperationalError as err:
                conn.close()
                last = err
                if is_busy(err):
                    raise
        else:
            raise StoreError(f"cannot read {self.path}: {last}")
        self.conn = conn
        version = self._inspect(conn)
        if version is None:
            raise StoreError(f"{self.path} is an empty SQLite file, not an estibench results store")
        tables = schema.tables(conn)
        # read in place: the current schema, or schema 7 whole (8 only adds what reads do without: the unique
        # index, metric_repeats, the runs' pid and host); anything else — an older schema, or a store missing
        # tables (an older estibench killed between its two upgrade transactions) — is read through an
        # upgrade of a private in-memory copy: reading never migrates the file
        if version < 7 or not READ_TABLES <= tables or (version == SCHEMA_VERSION and "metric_repeats" not in tables):
            memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            conn.backup(memory)
            conn.close()
            conn = memory
            self.conn = conn
            if version < SCHEMA_VERSION:
                schema.upgrade(conn, version)
            schema.create(conn)
        self.conn = conn


    # -- writing -----------------------------------------------------------------------------
    def _transaction(self, work: Callable, what: str = "write to the results store"):
        """Run ``work(conn)`` in one ``BEGIN IMMEDIATE`` transaction; while another process holds the
        write lock, wait and retry (up to ``patience_s``, one warning line); roll back on any failure."""
        if self.readonly:
            raise StoreError(f"{self.path} was opened read-only")
        deadline = time.monotonic() + self.patience_s
        delay, warned = 0.05, False
        with self.lock:
            while True:
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as err:
                    if not is_busy(err):
                        raise self._translate(err) from None
                    if time.monotonic() > deadline:
                        raise StoreBusyError(f"{self.path} stayed locked by another process for "
                                             f"{self.patience_s:.0f} s; could not {what}") from None
                    if not warned:
                        print(f"estibench: {self.path} is locked by another process; waiting to {what}",
                              file=sys.stderr, flush=True)
                        warned = True
                    time.sleep(delay)
                    delay = min(2 * delay, 1.0)
                    continue
                try:
                    out = work(self.conn)
                    self.conn.execute("COMMIT")
                    return out
                except BaseException as err:
                    if self.conn.in_transaction:
                        try:
                            self.conn.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                    if isinstance(err, sqlite3.OperationalError):
                        if is_busy(err) and time.monotonic() <= deadline:
                            time.sleep(delay)
                            delay = min(2 * delay, 1.0)
                            continue
                        raise self._translate(err) from None
                    raise

    def _translate(self, err: sqlite3.Error) -> StoreError:
        if is_full(err):
            return StoreFullError(f"the disk holding {self.folder} is full ({err}); the transaction was rolled "
                                  f"back, every cell stored before is intact; free space and run the same "
                                  f"command to resume")
        if is_busy(err):
            return StoreBusyError(f"{self.path} stayed locked by another process ({err})")
        return StoreError(f"{self.path}: {err}")

    def close(self):
        self._close_quietly()

    # -- meta --------------------------------------------------------------------------------
    def get_meta(self, name: str) -> Optional[str]:
        with self.lock:
            row = self.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, name: str, value: str) -> None:
        self._transaction(lambda c: c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, str(value))))

    def check_config_version(self, version: int) -> None:
        """Refuse a store whose cells were written under another CONFIG_VERSION (their keys would
        never match, so a rerun would silently mix two numerics in one folder)."""
        stored = self.get_meta("config_version")  # (an integer, or the store was refused at open)
        if stored is None:
            rows = self.conn.execute("SELECT config FROM cells LIMIT 1").fetchone()
            stored = json.loads(rows[0]).get("config_version") if rows else None
        if stored is not None and _integer(stored) != int(version):
            raise StoreError(f"{self.path} holds results of config version {stored}, this code writes "
                             f"version {version}; use another --out folder")
