"""The store's schema: its tables (:data:`SCHEMA`, version :data:`SCHEMA_VERSION`), the setting columns of a
cell, and the migrations from every older schema, one function of a connection per step.  None of them begins or
commits a transaction: the store runs :func:`upgrade`, :func:`create` and the marking of dead runs in the one
transaction of its opening (a kill at any step leaves the old store or the new one), or on a private in-memory copy
when it reads an older store read-only."""
from __future__ import annotations

import hashlib
import json
import numbers
import sqlite3
from typing import Dict, Optional

SCHEMA_VERSION = 9

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, study TEXT NOT NULL, model TEXT NOT NULL, estimator TEXT NOT NULL,
    label TEXT NOT NULL, particles INTEGER NOT NULL, seeds TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, wall_s REAL, sec_per_iter REAL, device TEXT, machine TEXT,
    finished_at TEXT, error TEXT, diverged_at INTEGER, attempts INTEGER DEFAULT 1,
    model_name TEXT, dataset TEXT, model_options TEXT, estimator_options TEXT, iterations INTEGER,
    eval_every INTEGER, batch_size INTEGER, lr REAL, optimiser TEXT, study_options TEXT, preset TEXT,
    config_version INTEGER, numerics_version INTEGER, threads INTEGER, compile TEXT, legacy_key TEXT
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


#: the prefix of the typed column of each model, estimator and study option (``model__arch``, ``estimator__variant``,
#: ``study__pretrain_ae_steps``; the double underscore as in scikit-learn's nested parameters), in the cells table
#: and the tidy table: every option a cell ran with is a column (model and estimator options: the effective ones,
#: defaults resolved; study options: those the study passed its task)
OPTION_PREFIXES = {"model_options": "model__", "estimator_options": "estimator__", "study_options": "study__"}


def config_key(config: dict) -> str:
    """A cell's key: the hash of its identity (``harness.runner.Cell.config``)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _column_value(value):
    """An option's value as a column holds it: numbers, text and NULL as they are, a bool as 0/1, anything
    else (a tuple of layer sizes, a mapping) as its JSON text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _column_type(value) -> str:
    """The declared type of a new option column, from the first value written to it (no declared type for NULL:
    the column then keeps each value as written)."""
    if isinstance(value, (bool, numbers.Integral)):
        return "INTEGER"
    if isinstance(value, numbers.Real):
        return "REAL"
    return "TEXT" if value is not None else ""


def option_columns(config: dict) -> Dict[str, object]:
    """The typed option columns of a cell (see :data:`OPTION_PREFIXES`), from its stored configuration."""
    out = {}
    for field, prefix in OPTION_PREFIXES.items():
        for name, value in sorted((config.get(field) or {}).items()):
            out[prefix + name] = _column_value(value)
    return out


def option_column_names(conn) -> tuple:
    """The option columns the cells table has, in order."""
    return tuple(row[1] for row in conn.execute("PRAGMA table_info(cells)")
                 if row[1].startswith(tuple(OPTION_PREFIXES.values())))


def add_option_columns(conn, columns: Dict[str, object]) -> None:
    """Add to the cells table the option columns it lacks (additive; an older cell's value there is NULL:
    it did not have that option)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(cells)")}
    for name, value in columns.items():
        if name not in have:
            if not name.replace("_", "a").isalnum():  # an option name is a Python identifier
                raise ValueError(f"cannot store option column {name!r}")
            conn.execute(f'ALTER TABLE cells ADD COLUMN "{name}" {_column_type(value)}')


def _json_setting(value) -> str:
    return json.dumps(value or {}, sort_keys=True, default=str)


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


def tables(conn) -> set:
    """The names of the tables the file holds."""
    return {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def create(conn) -> None:
    """Create what the current schema has and the file lacks (every statement is ``IF NOT EXISTS``)."""
    for statement in filter(str.strip, SCHEMA.split(";")):
        conn.execute(statement)
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def upgrade(conn, version: int) -> None:
    """Migrate a store of schema ``version`` to :data:`SCHEMA_VERSION`, step by step (:func:`create` adds the
    tables a step leaves out)."""
    if version == 1:
        upgrade_from_1(conn)
    if version <= 2:
        upgrade_from_2(conn)
    if version <= 3:
        upgrade_from_3(conn)
    if version <= 4:
        upgrade_from_4(conn)
    # 5 → 6 is additive: the ``artifacts`` table, created whole by :func:`create`
    if version <= 6:
        upgrade_from_6(conn)
    if version <= 7:
        upgrade_from_7(conn)
    if version <= 8:
        upgrade_from_8(conn)
    conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))


def upgrade_from_1(conn):
    """Schema 1 → 2 is additive (error, diverged_at, attempts columns; runs table)."""
    for column in ("error TEXT", "diverged_at INTEGER", "attempts INTEGER DEFAULT 1"):
        conn.execute(f"ALTER TABLE cells ADD COLUMN {column}")


def upgrade_from_2(conn):
    """Schema 2 → 3: stores of schema ≤ 2 were written before the trajectory gradient variance was
    debiased, so their ``grad_logvar_ema`` rows (zero-started EMAs, biased low by about
    1 − 0.999ⁿ) are renamed ``grad_logvar_ema_undebiased``: kept, never shown as the debiased
    metric.  Every other metric is unchanged."""
    conn.execute("UPDATE metrics SET metric = 'grad_logvar_ema_undebiased' WHERE metric = 'grad_logvar_ema'")


def upgrade_from_3(conn):
    """Schema 3 → 4 is additive: every setting that distinguishes two cells becomes a column of the
    cells table (and of :meth:`Store.table`), filled from each cell's stored configuration; ``preset``
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


def upgrade_from_4(conn):
    """Schema 4 → 5 is additive: the torch thread count of each cell (``threads``; NULL — not
    recorded — for older cells), each run's ``status`` and ``threads``, and the ``claims`` table."""
    for table, columns in (("cells", ("threads INTEGER",)), ("runs", ("status TEXT", "threads INTEGER"))):
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for column in columns:
            if have and column.split()[0] not in have:  # (a missing table is created whole)
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def upgrade_from_6(conn):
    """Schema 6 → 7 is additive: the ``compile`` setting column (``--compile``: the torch.compile mode of
    the training step, part of a compiled cell's key); every older cell ran eagerly: 'off'."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(cells)")}
    if have and "compile" not in have:
        conn.execute("ALTER TABLE cells ADD COLUMN compile TEXT")
    conn.execute("UPDATE cells SET compile = 'off' WHERE compile IS NULL")


def upgrade_from_7(conn):
    """Schema 7 → 8: each run's ``pid`` and ``host`` (NULL for older runs), and one row per (cell, seed,
    iteration, metric) under a unique index.  Older stores may hold a metric twice (the RBM task recorded
    log Z both at an evaluation and in the final metrics of the same iteration).  A group whose rows are
    all equal keeps one row (its mean is that value); a group with different values keeps its first row in
    ``metrics`` and moves the others, in the order written, to ``metric_repeats``, which :meth:`Store.table`
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


#: defaults that changed before the cells recorded their effective options (config version 2): (study, estimator,
#: option) → the default a cell of numerics version 1 of that study and estimator ran with.  History, read only by
#: :func:`upgrade_from_8`; a later change of a default changes the key by itself
_FORMER_DEFAULTS = {("sbn", "nvil", "variant"): "mnih_gregor", ("gmm", "concrete", "relaxation"): "mass"}


def effective_config(config: dict) -> Optional[dict]:
    """The configuration of version 2 of a cell stored under version 1 (its options as passed): its model and
    estimator options with the defaults resolved (``Registry.effective`` of the classes this process has
    registered, never importing a name; the defaults of :data:`_FORMER_DEFAULTS` for the cells computed before
    they changed).  None for a cell whose model or estimator this process does not know.  An option added to a
    class after the cell was computed is recorded at its default; such cells predate a revision that invalidates
    them (``harness.runner.numerics_stale``), so no table shows them."""
    from estibench import estimators, models
    from estibench.models.registry import signature_defaults
    model, estimator = config.get("model"), config.get("estimator")
    factories = models.REGISTRY.known(model), estimators.REGISTRY.known(estimator)
    if None in factories:
        return None
    version = int(config.get("numerics_version", 1))
    resolved = []
    for factory, field in zip(factories, ("model_options", "estimator_options")):
        defaults = signature_defaults(factory)
        for (study, name, option), former in _FORMER_DEFAULTS.items():
            if field == "estimator_options" and (study, name) == (config.get("study"), estimator) and version < 2 \
                    and option in defaults:
                defaults[option] = former
        resolved.append(dict(sorted({**defaults, **(config.get(field) or {})}.items())))
    return {**config, "model_options": resolved[0], "estimator_options": resolved[1], "config_version": 2}


def upgrade_from_8(conn):
    """Schema 8 → 9: every cell records its effective options.  A cell of config version 1 (its options as
    passed) gets the configuration of version 2 (:func:`effective_config`) and the key that hashes it; its
    rows, artifacts and claim follow the key, and its former key is kept in ``legacy_key``.  Every option
    becomes a typed column (:func:`option_columns`).  No value is changed or dropped; a cell whose model or
    estimator this process does not know keeps its configuration and key (a rerun computes it anew)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(cells)")}
    if not have:
        return
    if "legacy_key" not in have:
        conn.execute("ALTER TABLE cells ADD COLUMN legacy_key TEXT")
    cells = conn.execute("SELECT key, config FROM cells").fetchall()
    if cells:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('config_version', '2')")
    for key, text in cells:
        config = json.loads(text)
        if int(config.get("config_version", 1)) < 2:
            new = effective_config(config)
            if new is not None:
                new_key = config_key(new)
                for table in ("metrics", "metric_repeats", "artifacts", "claims"):
                    if table in tables(conn):
                        conn.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (new_key, key))
                conn.execute("UPDATE cells SET key = ?, legacy_key = ?, config = ?, model_options = ?, "
                             "estimator_options = ?, config_version = 2 WHERE key = ?",
                             (new_key, key, json.dumps(new, sort_keys=True), _json_setting(new["model_options"]),
                              _json_setting(new["estimator_options"]), key))
                key, config = new_key, new
        columns = option_columns(config)
        add_option_columns(conn, columns)
        if columns:
            sets = ", ".join(f'"{c}" = ?' for c in columns)
            conn.execute(f"UPDATE cells SET {sets} WHERE key = ?", (*columns.values(), key))
