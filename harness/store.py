"""The results store: one SQLite file per output folder, one transaction per finished cell.

Cells are keyed by a hash of their configuration (see :func:`harness.runner.Cell.key`).  Only the
driver writes, one transaction per finished cell, so a killed sweep never leaves half a cell.
A cell's ``status`` is

* ``done``      finished; a rerun skips it;
* ``diverged``  its loss or gradients became NaN/inf: ``diverged_at`` is the iteration and its
                rows are the metrics recorded up to the last finite evaluation; a rerun skips it;
* ``failed``    it raised: ``error`` holds the traceback, it has no rows, and a rerun retries it;
* ``superseded`` a cell of the same configuration written by a newer numerics version
                (``harness.runner.NUMERICS_CHANGES``) replaced it: its rows are kept, but
                :meth:`cells` and :meth:`table` leave it out, so two numerics never pool.

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
size, lr, optimiser, study options, preset, configuration and numerics versions, compile mode).  The torch thread
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
import socket
import sqlite3
import sys
import threading
import time
from typing import Callable, Iterable, Optional

import pandas as pd

from estibench import files
from estibench.files import pid_alive

SCHEMA_VERSION = 8
FILENAME = "results.sqlite"
#: seconds one SQLite call waits for a lock before the retry loop takes over
BUSY_TIMEOUT_S = 5.0
#: seconds a write keeps retrying while another process holds the write lock
WRITE_PATIENCE_S = 600.0
#: seconds a cell claim lives unless its run renews it
LEASE_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, study TEXT NOT NULL, model TEXT NOT NULL, estimator TEXT NOT NULL,
    label TEXT NOT NULL, particles INTEGER NOT NULL, seeds TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, wall_s REAL, sec_per_iter REAL, device TEXT, machine TEXT,
    finished_at TEXT, error TEXT, diverged_at INTEGER, attempts INTEGER DEFAULT 1,
    model_name TEXT, dataset TEXT, model_options TEXT, estimator_options TEXT, iterations INTEGER,
    eval_every INTEGER, batch_size INTEGER, lr REAL, optimiser TEXT, study_options TEXT, preset TEXT,
    config_version INTEGER, numerics_version INTEGER, threads INTEGER, compile TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT, finished_at TEXT, command TEXT,
    git_commit TEXT, machine TEXT, versions TEXT, backend TEXT, jobs INTEGER,
    cells_total INTEGER, cells_run INTEGER, wall_s REAL, status TEXT, threads INTEGER, pid INTEGER, host TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    key TEXT NOT NULL, seed INTEGER NOT NULL, iteration INTEGER NOT NULL,
    metric TEXT NOT NULL, value REAL
);
CREATE INDEX IF NOT EXISTS metrics_key ON metrics (key);
CREATE UNIQUE INDEX IF NOT EXISTS metrics_unique ON metrics (key, seed, iteration, metric);
CREATE TABLE IF NOT EXISTS metric_repeats (
    key TEXT NOT NULL, seed INTEGER NOT NULL, iteration INTEGER NOT NULL,
    metric TEXT NOT NULL, value REAL
);
CREATE INDEX IF NOT EXISTS metric_repeats_key ON metric_repeats (key);
CREATE TABLE IF NOT EXISTS artifacts (
    key TEXT NOT NULL, name TEXT NOT NULL, mime TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, name)
);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT, pid INTEGER, expires_at REAL NOT NULL
);
"""


#: the tables a reader queries (schema 7 on; schema 8 adds ``metric_repeats``)
READ_TABLES = frozenset({"meta", "cells", "metrics", "runs", "artifacts", "claims"})

#: the settings of a cell beyond (study, model label, estimator, label, particles, seeds), as columns
SETTING_TYPES = {"model_name": "TEXT", "dataset": "TEXT", "model_options": "TEXT", "estimator_options": "TEXT",
                 "iterations": "INTEGER", "eval_every": "INTEGER", "batch_size": "INTEGER", "lr": "REAL",
                 "optimiser": "TEXT", "study_options": "TEXT", "preset": "TEXT", "config_version": "INTEGER",
                 "numerics_version": "INTEGER", "compile": "TEXT"}
SETTING_COLUMNS = tuple(SETTING_TYPES)
#: the tidy table's columns, in order
TABLE_COLUMNS = ("study", "model", "estimator", "label", "particles", "seed", "iteration", "metric", "value",
                 "key") + SETTING_COLUMNS


def _json_setting(value) -> str:
    return json.dumps(value or {}, sort_keys=True, default=str)


def _uri_path(path: str) -> str:
    from urllib.parse import quote
    return quote(os.path.abspath(path))


def _maybe(cast, value):
    return None if value is None else cast(value)


def settings_of(config: dict, preset: Optional[str] = None) -> dict:
    """The setting columns of a cell from its stored configuration.  ``dataset`` is the model's
    ``dataset`` option, else the declared ``default_dataset`` of a model already registered in this
    process (``Registry.known``: a store is read as data, so a ``package.module:Class`` it names is
    never imported; NULL for a model this process does not know); a setting the configuration lacks
    (a hand-made or very old store) is NULL."""
    model_options = config.get("model_options") or {}
    model = config.get("model")
    dataset = model_options.get("dataset")
    if dataset is None and model is not None:
        from estibench import models
        dataset = getattr(models.REGISTRY.known(model), "default_dataset", None)
    return {"model_name": model, "dataset": _maybe(str, dataset),
            "model_options": _json_setting(model_options),
            "estimator_options": _json_setting(config.get("estimator_options")),
            "iterations": _maybe(int, config.get("iterations")), "eval_every": _maybe(int, config.get("eval_every")),
            "batch_size": _maybe(int, config.get("batch_size")), "lr": _maybe(float, config.get("lr")),
            "optimiser": _json_setting(config.get("optimiser")),
            "study_options": _json_setting(config.get("study_options")),
            "preset": preset, "config_version": _maybe(int, config.get("config_version")),
            "numerics_version": int(config.get("numerics_version", 1)),
            "compile": str(config.get("compile", "off"))}


def repeated_row(keys: Iterable) -> Optional[str]:
    """The first (seed, iteration, metric) that ``keys`` give twice, described in words, else None: a cell
    records each metric once per seed and iteration (the store's unique index)."""
    seen = set()
    for seed, iteration, metric in keys:
        if (seed, iteration, metric) in seen:
            return f"the task recorded metric {metric!r} twice for seed {seed} at iteration {iteration}"
        seen.add((seed, iteration, metric))
    return None


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


def _identity(config: dict) -> str:
    """A cell's configuration without its numerics version (what a newer version supersedes)."""
    return json.dumps({k: v for k, v in config.items() if k != "numerics_version"}, sort_keys=True, default=str)


class StoreError(RuntimeError):
    """The store cannot be used (corrupt file, or written by an incompatible schema version)."""


class StoreFullError(StoreError):
    """A write failed because the disk (or the file system's quota) is full; nothing was half-written."""


class StoreBusyError(StoreError):
    """Another process held the store's write lock for longer than :data:`WRITE_PATIENCE_S`."""


#: statuses a rerun skips (a failed cell is retried)
FINISHED = ("done", "diverged")

_FULL = ("database or disk is full", "disk i/o error")
_BUSY = ("database is locked", "database is busy", "database table is locked")


def _is_full(err: BaseException) -> bool:
    return files.is_full(err) or any(m in str(err).lower() for m in _FULL[:1])


def _is_busy(err: BaseException) -> bool:
    return isinstance(err, sqlite3.OperationalError) and any(m in str(err).lower() for m in _BUSY)


def host_name() -> str:
    return socket.gethostname()


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


class Store:
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
                    self._upgrade(c, version)
                self._create(c)
                self._mark_dead_runs(c)

            self._transaction(prepare)
        except sqlite3.DatabaseError as err:
            self._close_quietly()
            if _is_full(err):
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
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
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
            if not _is_busy(err):
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
                if _is_busy(err):
                    raise
        else:
            raise StoreError(f"cannot read {self.path}: {last}")
        self.conn = conn
        version = self._inspect(conn)
        if version is None:
            raise StoreError(f"{self.path} is an empty SQLite file, not an estibench results store")
        tables = self._tables(conn)
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
                self._upgrade(conn, version)
            self._create(conn)
        self.conn = conn

    @staticmethod
    def _tables(conn) -> set:
        return {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _upgrade(self, conn, version: int) -> None:
        if version == 1:
            self._upgrade_from_1(conn)
        if version <= 2:
            self._upgrade_from_2(conn)
        if version <= 3:
            self._upgrade_from_3(conn)
        if version <= 4:
            self._upgrade_from_4(conn)
        # 5 → 6 is additive: the ``artifacts`` table, created whole by ``_create``
        if version <= 6:
            self._upgrade_from_6(conn)
        if version <= 7:
            self._upgrade_from_7(conn)
        conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))

    @staticmethod
    def _create(conn) -> None:
        for statement in filter(str.strip, SCHEMA.split(";")):
            conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

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
                    if not _is_busy(err):
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
                        if _is_busy(err) and time.monotonic() <= deadline:
                            time.sleep(delay)
                            delay = min(2 * delay, 1.0)
                            continue
                        raise self._translate(err) from None
                    raise

    def _translate(self, err: sqlite3.Error) -> StoreError:
        if _is_full(err):
            return StoreFullError(f"the disk holding {self.folder} is full ({err}); the transaction was rolled "
                                  f"back, every cell stored before is intact; free space and run the same "
                                  f"command to resume")
        if _is_busy(err):
            return StoreBusyError(f"{self.path} stayed locked by another process ({err})")
        return StoreError(f"{self.path}: {err}")

    @staticmethod
    def _upgrade_from_1(conn):
        """Schema 1 → 2 is additive (error, diverged_at, attempts columns; runs table)."""
        for column in ("error TEXT", "diverged_at INTEGER", "attempts INTEGER DEFAULT 1"):
            conn.execute(f"ALTER TABLE cells ADD COLUMN {column}")

    @staticmethod
    def _upgrade_from_2(conn):
        """Schema 2 → 3: stores of schema ≤ 2 were written before the trajectory gradient variance was
        debiased, so their ``grad_logvar_ema`` rows (zero-started EMAs, biased low by about
        1 − 0.999ⁿ) are renamed ``grad_logvar_ema_undebiased``: kept, never shown as the debiased
        metric.  Every other metric is unchanged."""
        conn.execute("UPDATE metrics SET metric = 'grad_logvar_ema_undebiased' WHERE metric = 'grad_logvar_ema'")

    @staticmethod
    def _upgrade_from_3(conn):
        """Schema 3 → 4 is additive: every setting that distinguishes two cells becomes a column of the
        cells table (and of :meth:`table`), filled from each cell's stored configuration; ``preset``
        was not recorded before schema 4 and stays empty (NULL) for those cells."""
        have = {row[1] for row in conn.execute("PRAGMA table_info(cells)")}
        for column in SETTING_COLUMNS:
            if column not in have:
                conn.execute(f"ALTER TABLE cells ADD COLUMN {column} {SETTING_TYPES[column]}")
        for key, cfg in conn.execute("SELECT key, config FROM cells").fetchall():
            values = settings_of(json.loads(cfg))
            values.pop("preset")
            sets = ", ".join(f"{c} = ?" for c in values)
            conn.execute(f"UPDATE cells SET {sets} WHERE key = ?", (*values.values(), key))

    @staticmethod
    def _upgrade_from_4(conn):
        """Schema 4 → 5 is additive: the torch thread count of each cell (``threads``; NULL — not
        recorded — for older cells), each run's ``status`` and ``threads``, and the ``claims`` table."""
        for table, columns in (("cells", ("threads INTEGER",)), ("runs", ("status TEXT", "threads INTEGER"))):
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for column in columns:
                if have and column.split()[0] not in have:  # (a missing table is created whole)
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    @staticmethod
    def _upgrade_from_6(conn):
        """Schema 6 → 7 is additive: the ``compile`` setting column (``--compile``: the torch.compile mode of
        the training step, part of a compiled cell's key); every older cell ran eagerly: 'off'."""
        have = {row[1] for row in conn.execute("PRAGMA table_info(cells)")}
        if have and "compile" not in have:
            conn.execute("ALTER TABLE cells ADD COLUMN compile TEXT")
        conn.execute("UPDATE cells SET compile = 'off' WHERE compile IS NULL")

    @staticmethod
    def _upgrade_from_7(conn):
        """Schema 7 → 8: each run's ``pid`` and ``host`` (NULL for older runs), and one row per (cell, seed,
        iteration, metric) under a unique index.  Older stores may hold a metric twice (the RBM task recorded
        log Z both at an evaluation and in the final metrics of the same iteration).  A group whose rows are
        all equal keeps one row (its mean is that value); a group with different values keeps its first row in
        ``metrics`` and moves the others, in the order written, to ``metric_repeats``, which :meth:`table`
        reads beside ``metrics``: every value stays readable and every mean of a seed's rows — what the
        reports show — is exactly what it was."""
        have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        for column in ("pid INTEGER", "host TEXT"):
            if have and column.split()[0] not in have:  # (a missing table is created whole)
                conn.execute(f"ALTER TABLE runs ADD COLUMN {column}")
        conn.execute("CREATE TABLE IF NOT EXISTS metric_repeats (key TEXT NOT NULL, seed INTEGER NOT NULL, "
                     "iteration INTEGER NOT NULL, metric TEXT NOT NULL, value REAL)")
        try:  # one sort when there are no duplicates (the usual case), however large the store
            conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS metrics_unique ON metrics (key, seed, iteration, metric)")
            return
        except sqlite3.IntegrityError:
            pass
        groups = conn.execute("SELECT key, seed, iteration, metric FROM metrics GROUP BY key, seed, iteration, "
                              "metric HAVING COUNT(*) > 1").fetchall()
        for group in groups:
            rows = conn.execute("SELECT rowid, value FROM metrics WHERE key = ? AND seed = ? AND iteration = ? "
                                "AND metric = ? ORDER BY rowid", group).fetchall()
            later = rows[1:]
            conn.executemany("DELETE FROM metrics WHERE rowid = ?", [(rowid,) for rowid, _ in later])
            if any(value != rows[0][1] for _, value in later):
                conn.executemany("INSERT INTO metric_repeats VALUES (?, ?, ?, ?, ?)",
                                 [(*group, value) for _, value in later])
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS metrics_unique ON metrics (key, seed, iteration, metric)")

    @staticmethod
    def _mark_dead_runs(conn) -> None:
        """Mark ``killed`` the runs still ``running`` whose process is gone from this machine."""
        host = host_name()
        rows = conn.execute("SELECT id, pid FROM runs WHERE status = 'running' AND host = ? AND pid IS NOT NULL",
                            (host,)).fetchall()
        conn.executemany("UPDATE runs SET status = 'killed' WHERE id = ?",
                         [(run,) for run, pid in rows if not pid_alive(pid)])

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

    # -- cells -------------------------------------------------------------------------------
    def statuses(self) -> dict:
        with self.lock:
            return dict(self.conn.execute("SELECT key, status FROM cells"))

    def done_keys(self) -> set:
        marks = ",".join("?" * len(FINISHED))
        with self.lock:
            return {k for (k,) in self.conn.execute(f"SELECT key FROM cells WHERE status IN ({marks})", FINISHED)}

    def write_cell(self, cell, rows: Iterable, wall_s: float, sec_per_iter: float, device: str,
                   machine: str, finished_at: str, status: str = "done", error: Optional[str] = None,
                   diverged_at: Optional[int] = None, threads: Optional[int] = None,
                   artifacts: Optional[dict] = None, owner: Optional[str] = None,
                   finished_since: Optional[str] = None) -> Optional[str]:
        """Replace the cell's rows and artifacts, record its status and release its claim, atomically
        (one transaction, retried while another process holds the write lock).  ``artifacts``: name →
        (mime type, bytes), small data a task made at the end (e.g. prior samples for a figure).

        ``owner`` (a run's claim name, as for :meth:`claim`): write only if, in the same transaction, no other
        owner holds the cell's claim and the cell is not finished (with ``finished_since``, as ``--force``
        passes: not finished at or after that time).  Returns None when written, else — nothing written —
        ``"finished"`` (another run stored it meanwhile) or the owner now holding the claim, like
        :meth:`claim`.  Without ``owner`` the write is unconditional (tools and tests).  Rows that repeat a
        (seed, iteration, metric) are refused whole (:class:`ValueError`; see :func:`repeated_row`)."""
        if status not in ("done", "diverged", "failed"):
            raise ValueError(f"unknown cell status {status!r}")
        key = cell.key()
        config = cell.config()
        rows = [(key, int(s), int(i), m, float(v)) for s, i, m, v in rows]
        repeated = repeated_row(r[1:4] for r in rows)
        if repeated is not None:
            raise ValueError(f"cell {cell.label()} K={cell.particles}: {repeated}")

        def work(conn):
            if owner is not None:
                held = conn.execute("SELECT owner FROM claims WHERE key = ?", (key,)).fetchone()
                if held is not None and held[0] != owner:
                    return held[0]
                done = conn.execute("SELECT status, finished_at FROM cells WHERE key = ?", (key,)).fetchone()
                if done and done[0] in FINISHED and (finished_since is None or (done[1] or "") >= finished_since):
                    conn.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner))
                    return "finished"
            row = conn.execute("SELECT attempts FROM cells WHERE key = ?", (key,)).fetchone()
            attempts = 1 + (int(row[0] or 1) if row else 0)
            conn.execute("DELETE FROM metrics WHERE key = ?", (key,))
            conn.execute("DELETE FROM metric_repeats WHERE key = ?", (key,))
            conn.execute("DELETE FROM artifacts WHERE key = ?", (key,))
            conn.execute("DELETE FROM cells WHERE key = ?", (key,))
            values = dict(key=key, study=cell.study, model=cell.model_label(), estimator=cell.estimator,
                          label=cell.label(), particles=cell.particles, seeds=json.dumps(list(cell.seeds)),
                          config=json.dumps(config, sort_keys=True), status=status, wall_s=wall_s,
                          sec_per_iter=sec_per_iter, device=device, machine=machine, finished_at=finished_at,
                          error=error, diverged_at=diverged_at, attempts=attempts, threads=threads,
                          **settings_of(config, preset=cell.preset))
            conn.execute(f"INSERT INTO cells ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                         tuple(values.values()))
            conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?)", rows)
            conn.executemany("INSERT INTO artifacts VALUES (?,?,?,?)",
                             [(key, str(n), str(m), sqlite3.Binary(bytes(d))) for n, (m, d) in (artifacts or {}).items()])
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('config_version', ?)", (str(config["config_version"]),))
            conn.execute("DELETE FROM claims WHERE key = ?", (key,))
            if status in FINISHED:
                identity = _identity(config)
                older = [k for k, cfg in conn.execute(
                    "SELECT key, config FROM cells WHERE study = ? AND estimator = ? AND particles = ? AND key != ?",
                    (cell.study, cell.estimator, cell.particles, key)) if _identity(json.loads(cfg)) == identity]
                conn.executemany("UPDATE cells SET status = 'superseded' WHERE key = ?", [(k,) for k in older])
            return None

        return self._transaction(work, f"store cell {cell.label()} K={cell.particles}")

    def artifacts(self) -> pd.DataFrame:
        """The artifacts of the cells :meth:`cells` lists as done or diverged: columns key, name, mime, data."""
        marks = ",".join("?" * len(FINISHED))
        with self.lock:
            rows = self.conn.execute(
                f"SELECT a.key, a.name, a.mime, a.data FROM artifacts a JOIN cells c ON a.key = c.key "
                f"WHERE c.status IN ({marks}) ORDER BY a.key, a.name", FINISHED).fetchall()
        return pd.DataFrame([(k, n, m, bytes(d)) for k, n, m, d in rows], columns=["key", "name", "mime", "data"])

    def cells(self, include_superseded: bool = False) -> pd.DataFrame:
        """Every cell but the superseded ones; a stale one (see :meth:`stale_keys`) is listed with
        status ``stale`` (its rows stay out of :meth:`table`)."""
        where = "" if include_superseded else " WHERE status != 'superseded'"
        with self.lock:
            out = pd.read_sql_query("SELECT * FROM cells" + where, self.conn)
        stale = self.stale_keys()
        if stale and len(out):
            out.loc[out.key.isin(stale), "status"] = "stale"
        return out

    # -- claims ------------------------------------------------------------------------------
    def claim(self, key: str, owner: str, lease_s: float = LEASE_S, finished_since: Optional[str] = None):
        """Claim cell ``key`` for ``owner`` for ``lease_s`` seconds.  Returns ``None`` when the claim
        is ours, ``"finished"`` when the cell is finished (and, with ``finished_since``, finished at or
        after that time: a forced run recomputes older results), else the other owner's name.  A claim
        whose lease has expired, or whose process is dead on this machine, is taken over."""
        pid = os.getpid()
        host = host_name()

        def work(conn):
            row = conn.execute("SELECT status, finished_at FROM cells WHERE key = ?", (key,)).fetchone()
            if row and row[0] in FINISHED and (finished_since is None or (row[1] or "") >= finished_since):
                return "finished"
            held = conn.execute("SELECT owner, host, pid, expires_at FROM claims WHERE key = ?", (key,)).fetchone()
            if held and held[0] != owner and held[3] > time.time() and not (held[1] == host and not pid_alive(held[2])):
                return held[0]
            conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
                         (key, owner, host, pid, time.time() + lease_s))
            return None

        return self._transaction(work, "claim a cell")

    def renew_claims(self, owner: str, lease_s: float = LEASE_S) -> None:
        self._transaction(lambda c: c.execute("UPDATE claims SET expires_at = ? WHERE owner = ?",
                                              (time.time() + lease_s, owner)), "renew this run's cell claims")

    def release_claims(self, owner: str) -> None:
        self._transaction(lambda c: c.execute("DELETE FROM claims WHERE owner = ?", (owner,)),
                          "release this run's cell claims")

    def claims(self) -> pd.DataFrame:
        with self.lock:
            return pd.read_sql_query("SELECT * FROM claims ORDER BY key", self.conn)

    def live_claims(self) -> dict:
        """key → owner of the claims that :meth:`claim` would not take over: lease not expired, and not held
        by a process known dead on this machine (what a dry run shows as running in another run)."""
        host, now_s = host_name(), time.time()
        with self.lock:
            rows = self.conn.execute("SELECT key, owner, host, pid, expires_at FROM claims").fetchall()
        return {k: o for k, o, h, p, e in rows if e > now_s and not (h == host and not pid_alive(p))}

    # -- runs --------------------------------------------------------------------------------
    def start_run(self, **fields) -> int:
        def work(conn):
            cur = conn.execute(
                "INSERT INTO runs (started_at, command, git_commit, machine, versions, backend, jobs, "
                "cells_total, status, threads) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (fields.get("started_at"), fields.get("command"), fields.get("git_commit"),
                 fields.get("machine"), json.dumps(fields.get("versions", {}), sort_keys=True),
                 fields.get("backend"), fields.get("jobs"), fields.get("cells_total"), "running",
                 fields.get("threads")))
            conn.execute("UPDATE runs SET pid = ?, host = ? WHERE id = ?", (os.getpid(), host_name(), cur.lastrowid))
            return int(cur.lastrowid)
        return self._transaction(work, "record the run")

    def finish_run(self, run_id: int, finished_at: str, cells_run: int, wall_s: float,
                   status: str = "finished") -> None:
        """Record the end of a run: ``finished``, ``interrupted`` (Ctrl-C, SIGTERM) or ``failed`` (a run that
        never records its end, killed by SIGKILL, is marked ``killed`` later: :meth:`runs`)."""
        self._transaction(lambda c: c.execute(
            "UPDATE runs SET finished_at = ?, cells_run = ?, wall_s = ?, status = ? WHERE id = ?",
            (finished_at, cells_run, wall_s, status, run_id)), "record the end of the run")

    def runs(self) -> pd.DataFrame:
        """Every run, oldest first; a ``running`` row whose process is gone from this machine reads ``killed``
        (the next open for writing records it so in the file)."""
        with self.lock:
            out = pd.read_sql_query("SELECT * FROM runs ORDER BY id", self.conn)
        if {"pid", "host"} <= set(out.columns) and len(out):
            here = host_name()
            dead = [s == "running" and h == here and pd.notna(p) and not pid_alive(int(p))
                    for s, h, p in zip(out.status, out.host, out.pid)]
            out.loc[dead, "status"] = "killed"
        return out

    # -- export ------------------------------------------------------------------------------
    def table(self, study: Optional[str] = None) -> pd.DataFrame:
        """The tidy table: one row per (cell, seed, iteration, metric), with every setting of its cell
        as a column (:data:`TABLE_COLUMNS`), so that reports group by columns and never pool two cells
        that differ in a setting.  (A metric an older store recorded twice with different values has a row
        per value, from ``metric_repeats``: see :meth:`_upgrade_from_7`.)"""
        settings = ", ".join(f"c.{c}" for c in SETTING_COLUMNS)
        rows = "metrics"
        with self.lock:
            if "metric_repeats" in self._tables(self.conn) and \
                    self.conn.execute("SELECT 1 FROM metric_repeats LIMIT 1").fetchone():
                # an older store's second values of a metric (see _upgrade_from_7), read beside the first
                rows = ("(SELECT key, seed, iteration, metric, value FROM metrics UNION ALL "
                        "SELECT key, seed, iteration, metric, value FROM metric_repeats)")
        query = ("SELECT c.study, c.model, c.estimator, c.label, c.particles, m.seed, m.iteration, "
                 f"m.metric, m.value, c.key, {settings} FROM {rows} m JOIN cells c ON m.key = c.key "
                 "WHERE c.status IN ('done', 'diverged')")
        params = ()
        if study is not None:
            query += " AND c.study = ?"
            params = (study,)
        with self.lock:
            out = pd.read_sql_query(query + " ORDER BY c.study, c.label, c.particles, m.seed, m.iteration",
                                    self.conn, params=params)
        stale = self.stale_keys()
        if stale:
            out = out[~out.key.isin(stale)].reset_index(drop=True)
        return out

    def stale_keys(self) -> set:
        """Finished cells written by an older numerics version than this code's for their (study,
        estimator) that a later change invalidates (``harness.runner.NUMERICS_CHANGES``,
        ``numerics_stale``) and not yet superseded: left out of
        :meth:`table` so that a partly rerun store never pools two numerics; ``cells()`` marks them."""
        from .runner import numerics_stale
        out = set()
        with self.lock:
            rows = self.conn.execute(
                "SELECT key, study, estimator, config FROM cells WHERE status IN ('done', 'diverged')").fetchall()
        for key, study, estimator, cfg in rows:
            if numerics_stale(study, estimator, int(json.loads(cfg).get("numerics_version", 1))):
                out.add(key)
        return out

    def export_csv(self, path: Optional[str] = None) -> str:
        """Write the tidy table to ``path`` (default ``FOLDER/metrics.csv``) through a unique temporary
        file (:func:`estibench.files.atomic_write`): a reader never sees a truncated file, a failure leaves
        nothing, a full disk is one line (:class:`StoreFullError`)."""
        path = path or os.path.join(self.folder, "metrics.csv")
        table = self.table()
        return files.atomic_write(path, lambda tmp: table.to_csv(tmp, index=False), full=StoreFullError)
