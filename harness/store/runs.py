"""The runs of a store: one row per invocation (its command, versions, counts, process id and host), and how a run
whose process is gone from this machine is told ``killed``."""
from __future__ import annotations

import json
import os
import socket

import pandas as pd

from estibench.files import pid_alive


def host_name() -> str:
    return socket.gethostname()


def mark_dead_runs(conn) -> None:
    """Mark ``killed`` the runs still ``running`` whose process is gone from this machine."""
    host = host_name()
    rows = conn.execute("SELECT id, pid FROM runs WHERE status = 'running' AND host = ? AND pid IS NOT NULL",
                        (host,)).fetchall()
    conn.executemany("UPDATE runs SET status = 'killed' WHERE id = ?",
                     [(run,) for run, pid in rows if not pid_alive(pid)])


class RunQueries:
    """The runs table's queries, a part of :class:`estibench.harness.store.Store` (its ``conn``, ``lock`` and
    ``_transaction``)."""

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
