"""The store's errors (each a one-line message) and how an SQLite error is told to be a full disk or a held lock."""
from __future__ import annotations

import sqlite3

from estibench import files


class StoreError(RuntimeError):
    """The store cannot be used (corrupt file, or written by an incompatible schema version)."""


class StoreFullError(StoreError):
    """A write failed because the disk (or the file system's quota) is full; nothing was half-written."""


class StoreBusyError(StoreError):
    """Another process held the store's write lock for longer than :data:`estibench.harness.store.WRITE_PATIENCE_S`."""


_FULL = ("database or disk is full", "disk i/o error")
_BUSY = ("database is locked", "database is busy", "database table is locked")


def is_full(err: BaseException) -> bool:
    return files.is_full(err) or any(m in str(err).lower() for m in _FULL[:1])


def is_busy(err: BaseException) -> bool:
    return isinstance(err, sqlite3.OperationalError) and any(m in str(err).lower() for m in _BUSY)

