"""Content fingerprints of trajectory data files: is this the data a run was trained on?

A path says where a file was, not what it holds: data files get copied, moved, regenerated and
overwritten. :func:`data_fingerprint` hashes what training reads - every stored array of every
trajectory (name, dtype, shape and bytes, in file order) plus n_dof and the joint types - with
SHA-256, straight from the HDF5 file (so it does not depend on how missing derivatives are
estimated). Each trajectory also gets a hash of its arrays alone (not its name), so a trajectory a
run trained on is recognised in another file under another name. About 0.5 s per 100 MB.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict

import numpy as np

from delan.errors import DataError

ALGORITHM = "sha256"
_ROWS = 2**16  # rows of an array hashed at a time


def _hash_arrays(group) -> str:
    import h5py

    h = hashlib.sha256()
    for key in sorted(group):
        item = group[key]
        if not isinstance(item, h5py.Dataset):
            continue
        if item.ndim == 0 or item.shape[0] <= _ROWS:
            a = np.ascontiguousarray(item[()])
            h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
            continue
        # a long array in pieces of rows (files larger than memory): the same bytes in the same order
        h.update(f"{key}|{item[0:0].dtype.str}|{item.shape}|".encode())
        for i in range(0, item.shape[0], _ROWS):
            h.update(np.ascontiguousarray(item[i : i + _ROWS]).tobytes())
    return f"{ALGORITHM}:{h.hexdigest()}"


def data_fingerprint(path: str) -> Dict[str, Any]:
    """{"fingerprint": "sha256:...", "trajectories": {name: "sha256:..."}} of a data file.

    Raises DataError (naming the file) if it is missing or not readable as HDF5."""
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            whole = hashlib.sha256()
            n_dof = f.attrs.get("n_dof")
            joint_types = f.attrs.get("joint_types")
            whole.update(f"n_dof={None if n_dof is None else int(n_dof)}|".encode())
            if joint_types is not None:
                values = [x.decode() if isinstance(x, bytes) else str(x) for x in np.atleast_1d(joint_types)]
                whole.update(f"joint_types={','.join(values)}|".encode())
            per: Dict[str, str] = {}
            group = f.get("trajectories")
            if group is not None and isinstance(group, h5py.Group):
                for name, g in group.items():
                    if isinstance(g, h5py.Group):
                        per[name] = _hash_arrays(g)
                        whole.update(f"{name}={per[name]}|".encode())
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {exc}") from None
    return {"fingerprint": f"{ALGORITHM}:{whole.hexdigest()}", "trajectories": per}
