"""The results store: one SQLite file per output folder, one transaction per finished cell.

Cells are keyed by a hash of their configuration (see :func:`harness.runner.Cell.key`); a rerun
skips keys already marked ``done``.  :meth:`Store.table` exports every metric row as one tidy
pandas table (columns: study, model, estimator, label, particles, seed, iteration, metric, value).
"""
from __future__ import annotations

import json
import os
import sqlite3
from typing import Iterable, Optional

import pandas as pd

SCHEMA_VERSION = 1
FILENAME = "results.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, study TEXT NOT NULL, model TEXT NOT NULL, estimator TEXT NOT NULL,
    label TEXT NOT NULL, particles INTEGER NOT NULL, seeds TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, wall_s REAL, sec_per_iter REAL, device TEXT, machine TEXT,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    key TEXT NOT NULL, seed INTEGER NOT NULL, iteration INTEGER NOT NULL,
    metric TEXT NOT NULL, value REAL
);
CREATE INDEX IF NOT EXISTS metrics_key ON metrics (key);
"""


class StoreError(RuntimeError):
    """The store cannot be used (corrupt file, or written by an incompatible schema version)."""


class Store:
    def __init__(self, folder: str, create: bool = True):
        self.folder = folder
        self.path = os.path.join(folder, FILENAME)
        if not create and not os.path.exists(self.path):
            raise StoreError(f"no results store at {self.path}")
        if create:
            os.makedirs(folder, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path)
            self.conn.executescript(SCHEMA)
            row = self.conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
            if row is None:
                with self.conn:
                    self.conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by store schema {row[0]}, this is {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path} is not a usable results store: {err}") from None

    def close(self):
        self.conn.close()

    def done_keys(self) -> set:
        return {k for (k,) in self.conn.execute("SELECT key FROM cells WHERE status = 'done'")}

    def write_cell(self, cell, rows: Iterable, wall_s: float, sec_per_iter: float, device: str,
                   machine: str, finished_at: str) -> None:
        """Replace the cell's rows and mark it done, atomically."""
        key = cell.key()
        with self.conn:
            self.conn.execute("DELETE FROM metrics WHERE key = ?", (key,))
            self.conn.execute("DELETE FROM cells WHERE key = ?", (key,))
            self.conn.execute(
                "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, cell.study, cell.model_label(), cell.estimator, cell.label(), cell.particles,
                 json.dumps(list(cell.seeds)), json.dumps(cell.config(), sort_keys=True), "done",
                 wall_s, sec_per_iter, device, machine, finished_at),
            )
            self.conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?)",
                                  ((key, int(s), int(i), m, float(v)) for s, i, m, v in rows))

    def cells(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM cells", self.conn)

    def table(self, study: Optional[str] = None) -> pd.DataFrame:
        query = ("SELECT c.study, c.model, c.estimator, c.label, c.particles, m.seed, m.iteration, "
                 "m.metric, m.value FROM metrics m JOIN cells c ON m.key = c.key WHERE c.status = 'done'")
        params = ()
        if study is not None:
            query += " AND c.study = ?"
            params = (study,)
        return pd.read_sql_query(query + " ORDER BY c.study, c.label, c.particles, m.seed, m.iteration", self.conn,
                                 params=params)

    def export_csv(self, path: Optional[str] = None) -> str:
        path = path or os.path.join(self.folder, "metrics.csv")
        tmp = path + ".tmp"
        self.table().to_csv(tmp, index=False)
        os.replace(tmp, path)
        return path
