"""The results store: one SQLite file per output folder, one transaction per finished cell.

Cells are keyed by a hash of their configuration (see :func:`harness.runner.Cell.key`).  Only the
driver writes, one transaction per finished cell, so a killed sweep never leaves half a cell.
A cell's ``status`` is

* ``done``      finished; a rerun skips it;
* ``diverged``  its loss or gradients became NaN/inf: ``diverged_at`` is the iteration and its
                rows are the metrics recorded up to the last finite evaluation; a rerun skips it;
* ``failed``    it raised: ``error`` holds the traceback, it has no rows, and a rerun retries it;
* ``superseded`` a cell of the same configuration written by a newer numerics version
                (``harness.runner.NUMERICS_VERSIONS``) replaced it: its rows are kept, but
                :meth:`cells` and :meth:`table` leave it out, so two numerics never pool.

``runs`` records every invocation (command, git commit, machine, versions, wall time, counts).
:meth:`Store.table` exports every metric row of done and diverged cells as one tidy pandas table
(columns :data:`TABLE_COLUMNS`: study, model, estimator, label, particles, seed, iteration, metric, value,
the cell's key and every setting of the cell — model name and options, dataset, estimator options,
iterations, evaluation interval, batch size, lr, optimiser, study options, preset, configuration
and numerics versions).
"""
from __future__ import annotations

import json
import os
import sqlite3
from typing import Iterable, Optional

import pandas as pd

SCHEMA_VERSION = 4
FILENAME = "results.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, study TEXT NOT NULL, model TEXT NOT NULL, estimator TEXT NOT NULL,
    label TEXT NOT NULL, particles INTEGER NOT NULL, seeds TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, wall_s REAL, sec_per_iter REAL, device TEXT, machine TEXT,
    finished_at TEXT, error TEXT, diverged_at INTEGER, attempts INTEGER DEFAULT 1,
    model_name TEXT, dataset TEXT, model_options TEXT, estimator_options TEXT, iterations INTEGER,
    eval_every INTEGER, batch_size INTEGER, lr REAL, optimiser TEXT, study_options TEXT, preset TEXT,
    config_version INTEGER, numerics_version INTEGER
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT, finished_at TEXT, command TEXT,
    git_commit TEXT, machine TEXT, versions TEXT, backend TEXT, jobs INTEGER,
    cells_total INTEGER, cells_run INTEGER, wall_s REAL
);
CREATE TABLE IF NOT EXISTS metrics (
    key TEXT NOT NULL, seed INTEGER NOT NULL, iteration INTEGER NOT NULL,
    metric TEXT NOT NULL, value REAL
);
CREATE INDEX IF NOT EXISTS metrics_key ON metrics (key);
"""


#: the settings of a cell beyond (study, model label, estimator, label, particles, seeds), as columns
SETTING_TYPES = {"model_name": "TEXT", "dataset": "TEXT", "model_options": "TEXT", "estimator_options": "TEXT",
                 "iterations": "INTEGER", "eval_every": "INTEGER", "batch_size": "INTEGER", "lr": "REAL",
                 "optimiser": "TEXT", "study_options": "TEXT", "preset": "TEXT", "config_version": "INTEGER",
                 "numerics_version": "INTEGER"}
SETTING_COLUMNS = tuple(SETTING_TYPES)
#: the tidy table's columns, in order
TABLE_COLUMNS = ("study", "model", "estimator", "label", "particles", "seed", "iteration", "metric", "value",
                 "key") + SETTING_COLUMNS


def _json_setting(value) -> str:
    return json.dumps(value or {}, sort_keys=True, default=str)


def _maybe(cast, value):
    return None if value is None else cast(value)


def settings_of(config: dict, preset: Optional[str] = None) -> dict:
    """The setting columns of a cell from its stored configuration.  ``dataset`` is the model's
    ``dataset`` option, else the model's declared ``default_dataset`` (NULL for a model this process
    does not know); a setting the configuration lacks (a hand-made or very old store) is NULL."""
    model_options = config.get("model_options") or {}
    model = config.get("model")
    dataset = model_options.get("dataset")
    if dataset is None and model is not None:
        from estibench import models
        try:
            dataset = models.REGISTRY.factory(model).default_dataset
        except KeyError:  # a model this code does not know (a plugin absent here)
            dataset = None
    return {"model_name": model, "dataset": _maybe(str, dataset),
            "model_options": _json_setting(model_options),
            "estimator_options": _json_setting(config.get("estimator_options")),
            "iterations": _maybe(int, config.get("iterations")), "eval_every": _maybe(int, config.get("eval_every")),
            "batch_size": _maybe(int, config.get("batch_size")), "lr": _maybe(float, config.get("lr")),
            "optimiser": _json_setting(config.get("optimiser")),
            "study_options": _json_setting(config.get("study_options")),
            "preset": preset, "config_version": _maybe(int, config.get("config_version")),
            "numerics_version": int(config.get("numerics_version", 1))}


def _identity(config: dict) -> str:
    """A cell's configuration without its numerics version (what a newer version supersedes)."""
    return json.dumps({k: v for k, v in config.items() if k != "numerics_version"}, sort_keys=True, default=str)


class StoreError(RuntimeError):
    """The store cannot be used (corrupt file, or written by an incompatible schema version)."""


#: statuses a rerun skips (a failed cell is retried)
FINISHED = ("done", "diverged")


class Store:
    def __init__(self, folder: str, create: bool = True):
        self.folder = folder
        self.path = os.path.join(folder, FILENAME)
        if not create and not os.path.exists(self.path):
            raise StoreError(f"no results store at {self.path}")
        if os.path.isdir(self.path):
            raise StoreError(f"{self.path} is a folder, not a results store")
        fresh = not os.path.exists(self.path)
        if create:
            os.makedirs(folder, exist_ok=True)
        self.conn = None
        try:
            conn = sqlite3.connect(self.path)
            self.conn = conn
            if not fresh:  # read before writing anything: a corrupt or foreign file is left as it is
                tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if tables and not {"meta", "cells", "metrics"} <= tables:
                    raise StoreError(f"{self.path} is an SQLite file but not an estibench results store")
                if tables:
                    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
                    version = int(row[0]) if row else None
                    if version not in (1, 2, 3, SCHEMA_VERSION):
                        raise StoreError(f"{self.path} was written by store schema {version}, "
                                         f"this is {SCHEMA_VERSION}")
                    if version == 1:
                        self._upgrade_from_1()
                    if version in (1, 2):
                        self._upgrade_from_2()
                    if version in (1, 2, 3):
                        self._upgrade_from_3()
            conn.executescript(SCHEMA)
            with conn:
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as err:
            if self.conn is not None:
                self.conn.close()
            raise StoreError(f"{self.path} is not a usable results store: {err}") from None
        except StoreError:
            self.conn.close()
            raise

    def _upgrade_from_1(self):
        """Schema 1 → 2 is additive (error, diverged_at, attempts columns; runs table)."""
        with self.conn:
            for column in ("error TEXT", "diverged_at INTEGER", "attempts INTEGER DEFAULT 1"):
                self.conn.execute(f"ALTER TABLE cells ADD COLUMN {column}")
            self.conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))

    def _upgrade_from_2(self):
        """Schema 2 → 3: stores of schema ≤ 2 were written before the trajectory gradient variance was
        debiased, so their ``grad_logvar_ema`` rows (zero-started EMAs, biased low by about
        1 − 0.999ⁿ) are renamed ``grad_logvar_ema_undebiased``: kept, never shown as the debiased
        metric.  Every other metric is unchanged."""
        with self.conn:
            self.conn.execute("UPDATE metrics SET metric = 'grad_logvar_ema_undebiased' WHERE metric = 'grad_logvar_ema'")
            self.conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))

    def _upgrade_from_3(self):
        """Schema 3 → 4 is additive: every setting that distinguishes two cells becomes a column of the
        cells table (and of :meth:`table`), filled from each cell's stored configuration; ``preset``
        was not recorded before schema 4 and stays empty (NULL) for those cells."""
        with self.conn:
            have = {row[1] for row in self.conn.execute("PRAGMA table_info(cells)")}
            for column in SETTING_COLUMNS:
                if column not in have:
                    self.conn.execute(f"ALTER TABLE cells ADD COLUMN {column} {SETTING_TYPES[column]}")
            rows = self.conn.execute("SELECT key, config FROM cells").fetchall()
            for key, cfg in rows:
                values = settings_of(json.loads(cfg))
                values.pop("preset")
                sets = ", ".join(f"{c} = ?" for c in values)
                self.conn.execute(f"UPDATE cells SET {sets} WHERE key = ?", (*values.values(), key))
            self.conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))

    def close(self):
        self.conn.close()

    # -- meta --------------------------------------------------------------------------------
    def get_meta(self, name: str) -> Optional[str]:
        row = self.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, name: str, value: str) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, str(value)))

    def check_config_version(self, version: int) -> None:
        """Refuse a store whose cells were written under another CONFIG_VERSION (their keys would
        never match, so a rerun would silently mix two numerics in one folder)."""
        stored = self.get_meta("config_version")
        if stored is None:
            rows = self.conn.execute("SELECT config FROM cells LIMIT 1").fetchone()
            stored = str(json.loads(rows[0]).get("config_version")) if rows else None
        if stored is not None and int(stored) != int(version):
            raise StoreError(f"{self.path} holds results of config version {stored}, this code writes "
                             f"version {version}; use another --out folder")

    # -- cells -------------------------------------------------------------------------------
    def statuses(self) -> dict:
        return dict(self.conn.execute("SELECT key, status FROM cells"))

    def done_keys(self) -> set:
        marks = ",".join("?" * len(FINISHED))
        return {k for (k,) in self.conn.execute(f"SELECT key FROM cells WHERE status IN ({marks})", FINISHED)}

    def _attempts(self, key: str) -> int:
        row = self.conn.execute("SELECT attempts FROM cells WHERE key = ?", (key,)).fetchone()
        return 1 + (int(row[0] or 1) if row else 0)

    def write_cell(self, cell, rows: Iterable, wall_s: float, sec_per_iter: float, device: str,
                   machine: str, finished_at: str, status: str = "done", error: Optional[str] = None,
                   diverged_at: Optional[int] = None) -> None:
        """Replace the cell's rows and record its status, atomically (one transaction)."""
        if status not in ("done", "diverged", "failed"):
            raise ValueError(f"unknown cell status {status!r}")
        key = cell.key()
        attempts = self._attempts(key)
        with self.conn:
            self.conn.execute("DELETE FROM metrics WHERE key = ?", (key,))
            self.conn.execute("DELETE FROM cells WHERE key = ?", (key,))
            config = cell.config()
            values = dict(key=key, study=cell.study, model=cell.model_label(), estimator=cell.estimator,
                          label=cell.label(), particles=cell.particles, seeds=json.dumps(list(cell.seeds)),
                          config=json.dumps(config, sort_keys=True), status=status, wall_s=wall_s,
                          sec_per_iter=sec_per_iter, device=device, machine=machine, finished_at=finished_at,
                          error=error, diverged_at=diverged_at, attempts=attempts,
                          **settings_of(config, preset=cell.preset))
            self.conn.execute(f"INSERT INTO cells ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                              tuple(values.values()))
            self.conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?)",
                                  ((key, int(s), int(i), m, float(v)) for s, i, m, v in rows))
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('config_version', ?)",
                              (str(cell.config()["config_version"]),))
            if status in FINISHED:
                identity = _identity(cell.config())
                older = [k for k, cfg in self.conn.execute(
                    "SELECT key, config FROM cells WHERE study = ? AND estimator = ? AND particles = ? AND key != ?",
                    (cell.study, cell.estimator, cell.particles, key)) if _identity(json.loads(cfg)) == identity]
                self.conn.executemany("UPDATE cells SET status = 'superseded' WHERE key = ?", [(k,) for k in older])

    def cells(self, include_superseded: bool = False) -> pd.DataFrame:
        """Every cell but the superseded ones; a stale one (see :meth:`stale_keys`) is listed with
        status ``stale`` (its rows stay out of :meth:`table`)."""
        where = "" if include_superseded else " WHERE status != 'superseded'"
        out = pd.read_sql_query("SELECT * FROM cells" + where, self.conn)
        stale = self.stale_keys()
        if stale and len(out):
            out.loc[out.key.isin(stale), "status"] = "stale"
        return out

    # -- runs --------------------------------------------------------------------------------
    def start_run(self, **fields) -> int:
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (started_at, command, git_commit, machine, versions, backend, jobs, "
                "cells_total) VALUES (?,?,?,?,?,?,?,?)",
                (fields.get("started_at"), fields.get("command"), fields.get("git_commit"),
                 fields.get("machine"), json.dumps(fields.get("versions", {}), sort_keys=True),
                 fields.get("backend"), fields.get("jobs"), fields.get("cells_total")))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, finished_at: str, cells_run: int, wall_s: float) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET finished_at = ?, cells_run = ?, wall_s = ? WHERE id = ?",
                              (finished_at, cells_run, wall_s, run_id))

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY id", self.conn)

    # -- export ------------------------------------------------------------------------------
    def table(self, study: Optional[str] = None) -> pd.DataFrame:
        """The tidy table: one row per (cell, seed, iteration, metric), with every setting of its cell
        as a column (:data:`TABLE_COLUMNS`), so that reports group by columns and never pool two cells
        that differ in a setting."""
        settings = ", ".join(f"c.{c}" for c in SETTING_COLUMNS)
        query = ("SELECT c.study, c.model, c.estimator, c.label, c.particles, m.seed, m.iteration, "
                 f"m.metric, m.value, c.key, {settings} FROM metrics m JOIN cells c ON m.key = c.key "
                 "WHERE c.status IN ('done', 'diverged')")
        params = ()
        if study is not None:
            query += " AND c.study = ?"
            params = (study,)
        out = pd.read_sql_query(query + " ORDER BY c.study, c.label, c.particles, m.seed, m.iteration", self.conn,
                                params=params)
        stale = self.stale_keys()
        if stale:
            out = out[~out.key.isin(stale)].reset_index(drop=True)
        return out

    def stale_keys(self) -> set:
        """Finished cells written by an older numerics version than this code's for their (study,
        estimator) (``harness.runner.NUMERICS_VERSIONS``) and not yet superseded: left out of
        :meth:`table` so that a partly rerun store never pools two numerics; ``cells()`` marks them."""
        from .runner import numerics_version
        out = set()
        for key, study, estimator, cfg in self.conn.execute(
                "SELECT key, study, estimator, config FROM cells WHERE status IN ('done', 'diverged')"):
            if int(json.loads(cfg).get("numerics_version", 1)) < numerics_version(study, estimator):
                out.add(key)
        return out

    def export_csv(self, path: Optional[str] = None) -> str:
        path = path or os.path.join(self.folder, "metrics.csv")
        tmp = path + ".tmp"
        self.table().to_csv(tmp, index=False)
        os.replace(tmp, path)
        return path
