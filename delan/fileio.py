"""File plumbing shared by everything that writes: permissions of atomically written files.

``tempfile.mkstemp`` creates files readable by their owner only (0600), which is right for a
temporary name but wrong for the result: a data file, checkpoint or JSON written by DeLaN should
get the permissions any other file the user creates gets (0666 masked by the umask).
"""
from __future__ import annotations

import os


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it: set and restore at once
    os.umask(mask)
    return mask


def default_permissions(path: str) -> None:
    """Give ``path`` the permissions a newly created file gets under the user's umask."""
    os.chmod(path, 0o666 & ~_umask())
