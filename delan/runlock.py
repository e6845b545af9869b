"""One training run per run directory: an exclusive advisory lock held for the whole run.

:class:`RunLock` takes ``fcntl.flock`` on the file ``.delan.lock`` in the run directory and writes
who holds it (pid, host, start time) into that file. A second run on the same directory gets a
:class:`~delan.errors.RunError` naming the holder instead of interleaving its checkpoints and logs
with the first one's. The kernel drops the lock when its process dies, however it dies, so a lock
file left behind by a killed run is simply taken over; a lock still held (e.g. by a forked child)
whose recorded process is gone on this host is stale, and is taken over too. The lock file is
removed when the lock is released.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Any, Dict, Optional

from delan.errors import RunError

LOCK_FILE = ".delan.lock"
_NO_LOCKS = tuple(getattr(errno, n) for n in ("ENOLCK", "ENOTSUP", "EOPNOTSUPP") if hasattr(errno, n))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    except OSError:
        return True
    return True


def read_holder(run_dir: str) -> Optional[Dict[str, Any]]:
    """What the lock file of ``run_dir`` says about its holder (None if absent or unreadable)."""
    try:
        with open(os.path.join(run_dir, LOCK_FILE)) as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _is_stale(holder: Optional[Dict[str, Any]]) -> bool:
    """The recorded holder is a process of this host that no longer exists."""
    if not holder or holder.get("host") != socket.gethostname():
        return False
    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    return pid != os.getpid() and not _pid_alive(pid)


def describe(holder: Optional[Dict[str, Any]]) -> str:
    """'pid 123 on host, since 2024-01-01 12:00:00' (or what of it is known)."""
    if not holder:
        return "a process that did not say who it is"
    text = f"pid {holder.get('pid', '?')}"
    if holder.get("host") and holder.get("host") != socket.gethostname():
        text += f" on {holder['host']}"
    if holder.get("since"):
        text += f", since {holder['since']}"
    return text


def _busy_error(run_dir: str, holder: Optional[Dict[str, Any]]) -> RunError:
    pid = (holder or {}).get("pid")
    stop = f"; wait for it to end, or stop it with a checkpoint: kill {pid}" if pid else ""
    return RunError(f"{run_dir}: in use by another training run ({describe(holder)}){stop}")


def _would_block(exc: OSError) -> bool:
    return exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


def check_free(run_dir: str) -> None:
    """Raise RunError naming the holder if another process holds ``run_dir``'s lock; create nothing.

    For checks before a run directory is created; :meth:`RunLock.acquire` is the real test."""
    path = os.path.join(run_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no lock file (or no directory): free
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if not _would_block(exc):
                return
            holder = read_holder(run_dir)
            if not _is_stale(holder):
                raise _busy_error(run_dir, holder) from None
            return
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class RunLock:
    """Exclusive lock on a run directory (which must exist), as a context manager.

    ``previous`` is the holder recorded in a lock file that was taken over (None if there was
    none), e.g. ``{"pid": 123, "host": "...", "since": "..."}``.
    """

    def __init__(self, run_dir: str):
        self.run_dir = os.fspath(run_dir)
        self.path = os.path.join(self.run_dir, LOCK_FILE)
        self.fd: Optional[int] = None
        self.previous: Optional[Dict[str, Any]] = None
        self.locked = True  # False where the file system has no flock (the holder is still recorded)

    def acquire(self) -> RunLock:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask applies
            except OSError as exc:
                raise RunError(f"{self.run_dir}: cannot create the lock file {LOCK_FILE}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in _NO_LOCKS:
                    # a file system without flock (some network mounts): record the holder, unlocked
                    self.locked = False
                    return self._hold(fd)
                os.close(fd)
                if not _would_block(exc):
                    raise RunError(f"{self.path}: cannot lock the run directory: {exc.strerror}") from None
                holder = read_holder(self.run_dir)
                if not _is_stale(holder):
                    raise _busy_error(self.run_dir, holder) from None
                # held by a descendant of a dead run (or a leaked descriptor): take it over by
                # replacing the file; the old holder keeps a lock on an unlinked file
                self.previous = holder
                _unlink(self.path)
                continue
            # the file may have been removed (released) between our open and flock: lock the
            # file that is at the path now, not an unlinked one
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            old = read_holder(self.run_dir)
            if old and self.previous is None:
                self.previous = old  # left behind by a run that died without releasing
            return self._hold(fd)
        raise RunError(f"{self.run_dir}: could not take the lock {LOCK_FILE} (it keeps changing hands)")

    def _hold(self, fd: int) -> RunLock:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "started": time.time(),
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            try:
                if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                    _unlink(self.path)  # while still holding it: a waiting opener re-checks the inode
            except OSError:
                pass
        finally:
            os.close(self.fd)  # drops the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def _unlink(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
