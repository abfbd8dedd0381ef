"""Cell claims: a run claims a cell before computing it, for a lease of :data:`LEASE_S` seconds that it renews while
it lives, so that two runs on one folder compute each cell once and a killed run's cells are taken over."""
from __future__ import annotations

import os
import time
from typing import Optional

import pandas as pd

from estibench.files import pid_alive

from .cells import FINISHED
from .runs import host_name

#: seconds a cell claim lives unless its run renews it
LEASE_S = 60.0


class ClaimQueries:
    """The claims table's queries, a part of :class:`estibench.harness.store.Store` (its ``conn``, ``lock`` and
    ``_transaction``)."""

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
