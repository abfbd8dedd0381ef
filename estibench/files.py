"""Files written safely, shared by every layer (data, harness, reports).

* :func:`atomic_write`: write through a uniquely named temporary file in the target's folder and
  move it over the target with ``os.replace``: a reader sees the old file or the new one, never a
  part; writers running at once never share a temporary name; on any failure (a full disk,
  Ctrl-C) the temporary file is removed and the target is left as it was.  It is the project's one
  atomic write: the store's ``metrics.csv`` export, the report site and pages, ``screen``'s outputs
  all call it (:func:`write_text` for a text, :func:`write_bytes` for bytes: the data cache's
  processed files and sidecars, with ``fsync``); ``full=`` turns a full disk into the caller's own
  one-line error (the store's ``StoreFullError``), else the ``OSError`` is raised as it came.
* :func:`umask`: the process's umask, read without changing it where Linux shows it, so that a
  thread writing a file never creates it under a momentarily zero umask.
* :func:`pid_alive`: whether a process of this machine exists (used to recognise leftovers of
  killed processes: report build folders, cell claims).
"""
from __future__ import annotations

import errno
import os
import tempfile
from typing import Callable, Optional


def umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_beside(path: str, suffix: str = ".tmp") -> str:
    """An empty, uniquely named file ``.<name>.<random><suffix>`` in ``path``'s folder, with the
    permissions a plain ``open(path, "w")`` would give (``mkstemp`` makes it 0600)."""
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~umask())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def is_full(err: BaseException) -> bool:
    """Whether ``err`` is a full disk or file-system quota (``ENOSPC``, ``EDQUOT``)."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def full_disk_message(path: str) -> str:
    """The one line said when ``path`` could not be written for a full disk."""
    folder, name = os.path.split(os.path.abspath(path))
    return (f"the disk holding {folder} is full: could not write {name} (nothing was replaced); free space and run "
            f"the same command again")


def atomic_write(path: str, write: Callable[[str], None], suffix: str = ".tmp",
                 full: Optional[Callable[[str], BaseException]] = None) -> str:
    """Call ``write(tmp)`` on a fresh temporary file beside ``path``, then replace ``path`` by it;
    returns ``path``.  Any failure removes the temporary file and re-raises; with ``full`` (an
    exception type, or any callable of a message), a full disk (:func:`is_full`) raises
    ``full(full_disk_message(path))`` instead, one line without the ``OSError`` chained."""
    try:
        tmp = temporary_beside(path, suffix)
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
    except OSError as err:
        if full is None or not is_full(err):
            raise
        raise full(full_disk_message(path)) from None
    return path


def write_text(path: str, text: str, encoding: str = "utf-8",
               full: Optional[Callable[[str], BaseException]] = None) -> str:
    """Replace ``path`` by a file holding ``text`` through :func:`atomic_write` (a text that cannot be
    encoded, like any failed write, leaves ``path`` as it was and no temporary file); returns ``path``."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding=encoding) as fh:
            fh.write(text)
    return atomic_write(path, write, full=full)


def write_bytes(path: str, data: bytes, suffix: str = ".tmp", fsync: bool = False,
                full: Optional[Callable[[str], BaseException]] = None) -> str:
    """Replace ``path`` by a file holding ``data`` through :func:`atomic_write`; with ``fsync`` the bytes reach
    the disk before the rename (the data cache's files); returns ``path``."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    return atomic_write(path, write, suffix=suffix, full=full)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one of another user's counts as alive)."""
    try:
        pid = int(pid)
        if pid <= 0:
            return False
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (OSError, OverflowError, ValueError, TypeError):  # ProcessLookupError, or no pid at all
        return False
    return True
