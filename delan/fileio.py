"""File plumbing shared by everything that writes: permissions of atomically written files.

``tempfile.mkstemp`` creates files readable by their owner only (0600), which is right for a
temporary name but wrong for the result: a data file, checkpoint or JSON written by DeLaN should
get the permissions any other file the user creates gets (0666 masked by the umask).
"""
from __future__ import annotations

import os
import tempfile


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it: set and restore at once
    os.umask(mask)
    return mask


def default_permissions(path: str) -> None:
    """Give ``path`` the permissions a newly created file gets under the user's umask."""
    os.chmod(path, 0o666 & ~_umask())


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and os.replace, so a
    reader (or a killed writer) never sees a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
