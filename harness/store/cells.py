"""Cells and their metrics: writing a finished cell (rows, artifacts, status) in one transaction, and reading the
cells, their statuses and artifacts, and the tidy table of every metric row."""
from __future__ import annotations

import json
import os
import sqlite3
from typing import Iterable, Optional

import pandas as pd

from estibench import files

from .errors import StoreFullError
from .schema import SETTING_COLUMNS, add_option_columns, option_column_names, option_columns, settings_of, tables

#: the tidy table's columns, in order
TABLE_COLUMNS = ("study", "model", "estimator", "label", "particles", "seed", "iteration", "metric", "value",
                 "key") + SETTING_COLUMNS

#: statuses a rerun skips (a failed cell is retried)
FINISHED = ("done", "diverged")


def repeated_row(keys: Iterable) -> Optional[str]:
    """The first (seed, iteration, metric) that ``keys`` give twice, described in words, else None: a cell
    records each metric once per seed and iteration (the store's unique index)."""
    seen = set()
    for seed, iteration, metric in keys:
        if (seed, iteration, metric) in seen:
            return f"the task recorded metric {metric!r} twice for seed {seed} at iteration {iteration}"
        seen.add((seed, iteration, metric))
    return None


def _identity(config: dict) -> str:
    """A cell's configuration without its numerics version (what a newer version supersedes)."""
    return json.dumps({k: v for k, v in config.items() if k != "numerics_version"}, sort_keys=True, default=str)


class CellQueries:
    """The queries of the cells, metrics and artifacts tables, a part of :class:`estibench.harness.store.Store` (its
    ``conn``, ``lock``, ``folder`` and ``_transaction``)."""

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
            options = option_columns(config)
            add_option_columns(conn, options)
            values.update(options)
            columns = ", ".join('"' + c + '"' for c in values)
            conn.execute(f"INSERT INTO cells ({columns}) VALUES ({', '.join('?' * len(values))})",
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

    def table(self, study: Optional[str] = None) -> pd.DataFrame:
        """The tidy table: one row per (cell, seed, iteration, metric), with every setting of its cell
        as a column (:data:`TABLE_COLUMNS`, then every model and estimator option the store's cells ran with,
        ``model__<option>`` and ``estimator__<option>``: :data:`.schema.OPTION_PREFIXES`), so that reports
        group by columns and never pool two cells that differ in a setting.  (A metric an older store recorded twice with different values has a row
        per value, from ``metric_repeats``: see :func:`.schema.upgrade_from_7`.)"""
        rows = "metrics"
        with self.lock:
            settings = ", ".join('c."' + c + '"' for c in SETTING_COLUMNS + option_column_names(self.conn))
            if "metric_repeats" in tables(self.conn) and \
                    self.conn.execute("SELECT 1 FROM metric_repeats LIMIT 1").fetchone():
                # an older store's second values of a metric (see schema.upgrade_from_7), read beside the first
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
        """Finished cells written by an older numerics version than this code's for their (model, estimator)
        that a later revision invalidates (``harness.runner.numerics_stale``: the revisions the engine and the
        classes declare) and not yet superseded: left out of :meth:`table` so that a partly rerun store never
        pools two numerics; ``cells()`` marks them.  A name this process does not know is never stale."""
        from ..runner import numerics_stale
        out = set()
        with self.lock:
            rows = self.conn.execute(
                "SELECT key, model_name, estimator, config FROM cells WHERE status IN ('done', 'diverged')").fetchall()
        for key, model, estimator, cfg in rows:
            if model and numerics_stale(model, estimator, int(json.loads(cfg).get("numerics_version", 1))):
                out.add(key)
        return out

    def export_csv(self, path: Optional[str] = None) -> str:
        """Write the tidy table to ``path`` (default ``FOLDER/metrics.csv``) through a unique temporary
        file (:func:`estibench.files.atomic_write`): a reader never sees a truncated file, a failure leaves
        nothing, a full disk is one line (:class:`StoreFullError`)."""
        path = path or os.path.join(self.folder, "metrics.csv")
        table = self.table()
        return files.atomic_write(path, lambda tmp: table.to_csv(tmp, index=False), full=StoreFullError)
