"""File plumbing shared by everything that writes: every "write to a temporary file, then
rename" of the package goes through :func:`atomic_path` (bytes, JSON, HDF5, figures), so a
reader (or a killed writer) never sees a half-written file.

``tempfile.mkstemp`` creates files readable by their owner only (0600), which is right for a
temporary name but wrong for the result: a data file, checkpoint or JSON written by DeLaN should
get the permissions any other file the user creates gets (0666 masked by the umask).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, Iterator

import numpy as np
import torch


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it: set and restore at once
    os.umask(mask)
    return mask


def default_permissions(path: str) -> None:
    """Give ``path`` the permissions a newly created file gets under the user's umask."""
    os.chmod(path, 0o666 & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ".tmp") -> Iterator[str]:
    """A temporary path in ``path``'s folder to write to; on leaving the block without an error it
    gets the user's usual permissions and replaces ``path`` (os.replace), on an error it is
    removed. ``suffix`` keeps an extension for writers that choose the format by it (".png")."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        default_permissions(tmp)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`), synced to disk."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as indented JSON (NumPy scalars and tensors as numbers and lists), atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, torch.Tensor):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
