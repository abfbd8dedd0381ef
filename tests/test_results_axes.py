"""The results table carries every axis (issue 9 §4): every setting that distinguishes two cells is a
column of the store's cells table and of the tidy table; schema-3 stores are migrated in place
(additively); two runs that differ in a setting never pool in a report."""
import json
import os
import sqlite3
import subprocess
import sys

import pandas as pd

from estibench.harness.runner import Cell
from estibench.harness.store import SCHEMA_VERSION, SETTING_COLUMNS, TABLE_COLUMNS, Store
from estibench.harness.store.schema import config_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: the cells table of store schema 3 (before the setting columns), as it was written
SCHEMA_3 = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cells (
    key TEXT PRIMARY KEY, study TEXT NOT NULL, model TEXT NOT NULL, estimator TEXT NOT NULL,
    label TEXT NOT NULL, particles INTEGER NOT NULL, seeds TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, wall_s REAL, sec_per_iter REAL, device TEXT, machine TEXT,
    finished_at TEXT, error TEXT, diverged_at INTEGER, attempts INTEGER DEFAULT 1
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT, finished_at TEXT, command TEXT,
    git_commit TEXT, machine TEXT, versions TEXT, backend TEXT, jobs INTEGER,
    cells_total INTEGER, cells_run INTEGER, wall_s REAL
);
CREATE TABLE metrics (key TEXT NOT NULL, seed INTEGER NOT NULL, iteration INTEGER NOT NULL, metric TEXT NOT NULL,
                      value REAL);
INSERT INTO meta VALUES ('schema_version', '3');
"""


def cell(**kw):
    base = dict(study="sbn", model="sbn_tiny", estimator="nvil", particles=1, seeds=(0, 1), iterations=10,
                model_options={"arch": "linear2"}, batch_size=24, lr=1e-3, eval_every=5,
                optimiser={"betas": (0.9, 0.99999)}, preset="rebar")
    base.update(kw)
    return Cell(**base)


def test_every_setting_is_a_column_of_both_tables(tmp_path):
    store = Store(str(tmp_path))
    c = cell()
    store.write_cell(c, [(0, 10, "valid_ll", -90.0), (1, 10, "valid_ll", -91.0)], 1.0, 0.1, "cpu", "m", "t")
    cells, table = store.cells(), store.table()
    options = [c for c in table.columns if c not in TABLE_COLUMNS]
    assert list(table.columns[:len(TABLE_COLUMNS)]) == list(TABLE_COLUMNS)
    # every effective model and estimator option, and every study option, is a typed column of both tables
    assert set(options) == ({f"model__{k}" for k in c.effective_model_options()}
                            | {f"estimator__{k}" for k in c.effective_estimator_options()})
    for frame in (cells, table):
        row = frame.iloc[0]
        assert row.model_name == "sbn_tiny" and row.dataset == "mnist5k-bern0" and row.preset == "rebar"
        assert (row.iterations, row.eval_every, row.batch_size, row.lr) == (10, 5, 24, 1e-3)
        assert json.loads(row.optimiser) == {"betas": [0.9, 0.99999]}
        assert json.loads(row.model_options) == {**c.effective_model_options(), "arch": "linear2"}
        assert json.loads(row.estimator_options)["variant"] == "rebar_code"  # the default, resolved
        assert row.model__arch == "linear2" and row.model__latent_bits == 8 and row.estimator__hidden == 100
        assert row.estimator__variant == "rebar_code" and row.estimator__decay == 0.8
        assert row.config_version == 2 and row.numerics_version == 3  # sbn nvil: its variant change and the measurement stream
    assert set(SETTING_COLUMNS) <= set(cells.columns)
    assert cell(preset="other").key() == c.key()  # the preset's name is recorded, not part of the identity


def test_a_schema_3_store_is_migrated_in_place_additively(tmp_path):
    """Legacy cells keep their rows and every old column; the new columns are filled from the stored
    configuration (the preset, never recorded before, stays empty).  Schema 9 gives a cell of config version 1
    (its options as passed) its effective options and the key of config version 2, keeping the former key in
    ``legacy_key``: the key this code computes for the same cell, so a rerun finds it done."""
    path = tmp_path / "results.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_3)
    c = cell(model="gmm", study="gmm", estimator="vimco", particles=2, model_options={}, batch_size=100,
             optimiser={}, preset="")
    old_key = config_key(c.requested())  # how a cell was keyed before config version 2
    values = (old_key, c.study, c.model_label(), c.estimator, c.label(), c.particles, json.dumps(list(c.seeds)),
              json.dumps(c.requested(), sort_keys=True), "done", 1.0, 0.1, "cpu", "m", "t", None, None, 1)
    conn.execute("INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", values)
    conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?)", [(old_key, 0, 10, "model_error", 0.5),
                                                                (old_key, 1, 10, "model_error", 0.25)])
    conn.commit()
    conn.close()
    store = Store(str(tmp_path))
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    row = store.cells().iloc[0]
    assert row.key == c.key() != old_key and row.legacy_key == old_key
    assert json.loads(row.config) == json.loads(json.dumps(c.config())) and row.model__num_clusters == 20 and row.model__init == "far"
    assert tuple(row[1:7]) == values[1:7] and tuple(row[8:17]) == ("done", 1.0, 0.1, "cpu", "m", "t", None, None, 1)
    assert row.dataset == "gmm-true-model" and row.batch_size == 100 and row.iterations == 10
    assert row.preset is None
    assert store.table().value.tolist() == [0.5, 0.25] and store.done_keys() == {c.key()}
    assert store.get_meta("config_version") == "2"  # (a rerun into this folder is not refused)
    assert store.artifacts().empty  # schema 6's artifacts table, created empty by the migration


def test_artifacts_belong_to_their_cell_and_are_replaced_with_it(tmp_path):
    """A cell's artifacts are written in its transaction, read back byte for byte, listed only while the
    cell is done or diverged, and replaced (or removed) when the cell is written again."""
    store = Store(str(tmp_path))
    c = cell(model="gmm", study="gmm", estimator="vimco", particles=2, model_options={}, batch_size=100,
             optimiser={}, preset="")
    blob = bytes(range(256)) * 3
    store.write_cell(c, [(0, 10, "log_px", -1.0)], 1.0, 0.1, "cpu", "m", "t", artifacts={"samples": ("application/x", blob)})
    got = store.artifacts()
    assert got[["key", "name", "mime"]].values.tolist() == [[c.key(), "samples", "application/x"]]
    assert got.data.iloc[0] == blob
    assert Store(str(tmp_path), readonly=True).artifacts().data.iloc[0] == blob
    store.write_cell(c, [], 1.0, 0.1, "cpu", "m", "t", status="failed", error="boom")
    assert store.artifacts().empty  # a failed rewrite keeps no stale artifact


def test_two_presets_in_one_folder_never_pool_in_the_report(tmp_path):
    """The SBN suite's rebar and disarm presets (batch 24 / lr 1e-3 against batch 50 / lr 1e-4) run into
    one folder: the tidy table tells them apart by its columns and the report lists them as two rows,
    each label naming the settings that differ."""
    out = str(tmp_path / "both")
    common = ["--suite", "sbn", "--model", "sbn_tiny", "--estimators", "reinforce", "--seeds", "1",
              "--iterations", "4", "--eval-every", "2", "--device", "cpu", "--model-options",
              "latent_bits=4,arch=linear1", "--out", out]
    for preset in ("rebar", "disarm"):
        done = subprocess.run([sys.executable, os.path.join(ROOT, "run_all.py"), *common, "--preset", preset],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(os.path.join(out, "metrics.csv"))
    assert set(table.preset) == {"rebar", "disarm"} and set(table.batch_size) == {24, 50}
    cells = pd.read_csv(os.path.join(out, "sbn", "tables", "cells.csv")) if os.path.exists(
        os.path.join(out, "sbn", "tables", "cells.csv")) else pd.read_csv(os.path.join(out, "tables", "cells.csv"))
    labels = " ".join(map(str, cells.astype(str).values.ravel()))
    assert "preset=rebar" in labels and "preset=disarm" in labels and "batch_size=50" in labels
