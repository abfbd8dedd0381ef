"""Helpers of the store tests: a store as an older estibench wrote it, and waiting on a running sweep."""
import json
import os
import sqlite3
import time

SCHEMA_1 = """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE cells (key TEXT PRIMARY KEY, study TEXT NOT NULL, model TEXT NOT NULL, estimator TEXT NOT NULL,
        label TEXT NOT NULL, particles INTEGER NOT NULL, seeds TEXT NOT NULL, config TEXT NOT NULL,
        status TEXT NOT NULL, wall_s REAL, sec_per_iter REAL, device TEXT, machine TEXT, finished_at TEXT);
    CREATE TABLE metrics (key TEXT NOT NULL, seed INTEGER NOT NULL, iteration INTEGER NOT NULL,
        metric TEXT NOT NULL, value REAL);
    INSERT INTO meta VALUES ('schema_version', '1');
"""


def write_schema_1_store(path, config: dict) -> None:
    """A schema-1 store (before statuses, runs and settings columns) holding one done cell ``k``
    (gmm, ww, K = 2, seed 0) with one metric row and the given configuration."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_1)
    conn.execute("INSERT INTO cells VALUES ('k', 'gmm', 'gmm', 'ww', 'ww', 2, '[0]', ?, 'done', 1, 0.1, 'cpu', 'm', 't')",
                 (json.dumps(config),))
    conn.execute("INSERT INTO metrics VALUES ('k', 0, 0, 'model_error', 0.5)")
    conn.commit()
    conn.close()


def wait_for_cells(path, n: int, proc, timeout: float = 120) -> int:
    """Poll the store at ``path`` (written by the running subprocess ``proc``) until it holds ``n``
    done cells; fails if the sweep ends or stalls first (then its cells are too short to act on)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if os.path.exists(path):
            try:
                conn = sqlite3.connect(path, timeout=0.2)
                done = conn.execute("SELECT COUNT(*) FROM cells WHERE status = 'done'").fetchone()[0]
                conn.close()
            except sqlite3.Error:
                continue
            if done >= n:
                return done
    raise AssertionError("the sweep ended (or stalled) before the test could act; make the cells longer")
