"""Data files larger than memory, written in pieces.

:func:`generate_to_file` makes the same file as ``save_dataset(generate_dataset(...))`` (same
arrays, attributes and fingerprint) without ever holding a whole trajectory: every trajectory's
datasets are created at full size (chunked, gzip as :func:`delan.data.save_dataset`) and filled
``piece`` samples at a time. With noise, a first pass takes the per-joint RMS of each channel
(summed in pieces, so it may differ from the whole-array RMS in the last bit) and the noise is
drawn in the same order as the in-memory generator (numpy draws normals one after another, so
the pieces of a trajectory get the same numbers).

:class:`PieceWriter` writes any data set this way (``delan data import`` of a large log).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, Optional

import numpy as np

from delan.data.schema import FORMAT, TRUTH, VERSION, _text
from delan.errors import DataError
from delan.fileio import atomic_path

DEFAULT_PIECE = 2**18  # samples per piece: 7 DoF with ground truth, about 230 MB at float64
_NOISY = ("q", "qd", "qdd", "tau")


class PieceWriter:
    """An open data file whose trajectories are written a piece of samples at a time.

    >>> with PieceWriter(tmp, n_dof, joint_names, system, attrs, joint_types) as w:
    ...     w.create("a", T, ["t", "q", "qd", "qdd", "tau", "H"])
    ...     w.write("a", 0, {"t": t0, "q": q0, ...})
    """

    def __init__(
        self,
        path: str,
        n_dof: int,
        joint_names,
        system: Optional[str],
        attrs: Dict[str, Any],
        joint_types=None,
        compression: Optional[str] = "gzip",
    ) -> None:
        import h5py

        self.n = int(n_dof)
        self.compression = compression
        # the same header as save_dataset (see its note on libver and fixed-length strings)
        self.f = h5py.File(path, "w", libver=("v108", "latest"))
        self.f.attrs["format"] = _text(FORMAT)
        self.f.attrs["version"] = VERSION
        self.f.attrs["n_dof"] = self.n
        if system is not None:
            self.f.attrs["system"] = _text(system)
        self.f.attrs["joint_names"] = _text(list(joint_names))
        if joint_types is not None:
            self.f.attrs["joint_types"] = _text(list(joint_types))
        for k, v in attrs.items():
            structured = isinstance(v, (dict, list))
            self.f.attrs[k] = _text(json.dumps(v)) if structured else _text(v) if isinstance(v, str) else v
        self.group = self.f.create_group("trajectories", track_order=True)

    def create(self, name: str, length: int, fields) -> None:
        """Datasets of trajectory ``name`` at full size: t (T,), H (T, n, n), the others (T, n)."""
        g = self.group.create_group(name)
        for k in fields:
            shape = (length,) if k == "t" else (length, self.n, self.n) if k == "H" else (length, self.n)
            size = int(np.prod(shape))
            squeeze = self.compression is not None and size > 64
            g.create_dataset(
                k,
                shape=shape,
                dtype=np.float64,
                chunks=True if squeeze else None,
                compression=self.compression if squeeze else None,
                shuffle=squeeze,
            )

    def write(self, name: str, start: int, fields: Dict[str, np.ndarray]) -> None:
        g = self.group[name]
        for k, v in fields.items():
            g[k][start : start + len(v)] = v

    def read(self, name: str, field: str, start: int, stop: int) -> np.ndarray:
        return self.group[name][field][start:stop]

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> PieceWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def generate_to_file(path: str, system_name: str, *, piece: int = DEFAULT_PIECE, **recipe: Any) -> Dict[str, Any]:
    """Generate a data set as :func:`delan.data.generate.generate_dataset` does (``recipe``: its
    keyword arguments, e.g. ``kind``, ``n_trajectories``, ``rate``, ``noise``, ``seed``, system
    parameters) and write it to ``path`` (atomically) ``piece`` samples at a time; memory stays
    about ``piece`` samples whatever the file's size. Not for ``simulate`` (the tracking run
    integrates all trajectories together). Returns a summary: system, n_dof, trajectories,
    samples, seconds."""
    import torch

    from delan.data.generate import _truth, plan_generation
    from delan.data.streaming import keep_heap_flat

    if not (isinstance(piece, (int, np.integer)) and piece >= 1):
        raise DataError(f"--piece-samples must be a positive integer, got {piece!r}")
    if recipe.get("simulate"):
        raise DataError(
            "simulate=True: the tracking run integrates all trajectories together and is written whole; "
            "use generate_dataset"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DataError(f"{path}: folder {folder} does not exist")
    plan = plan_generation(system_name, check_memory_use=False, disk_folder=folder, **recipe)
    system, refs, T, r = plan.system, plan.refs, plan.T, plan.recipe
    started = time.perf_counter()
    keep_heap_flat()
    n = system.n_dof
    fields = ["t", "q", "qd", "qdd", "tau"] + list(TRUTH)
    info = plan.generator_info()
    threads = torch.get_num_threads()
    try:
        with (
            atomic_path(path) as tmp,
            PieceWriter(tmp, n, system.joint_names, system.name, {"generator": info}, system.joint_types) as w,
        ):
            squares = {k: np.zeros(n) for k in _NOISY}
            for ref in refs:
                w.create(ref.name, T, fields)
                for a in range(0, T, piece):
                    tp = np.arange(a, min(a + piece, T)) / r.rate  # as (arange(T) / rate)[a:a + piece]
                    q, qd, qdd = ref(tp)
                    truth = _truth(system, q, qd, qdd)
                    tau = truth.pop("tau")
                    part = dict(t=tp, q=q, qd=qd, qdd=qdd, tau=tau, **truth)
                    w.write(ref.name, a, part)
                    if r.noise > 0:
                        for k in _NOISY:
                            squares[k] += (np.asarray(part[k], float) ** 2).sum(0)
            if r.noise > 0:
                # same draws as the in-memory generator: field by field, trajectory by trajectory
                nrng = np.random.default_rng([r.seed, 1])
                total = T * len(refs)
                for k in _NOISY:
                    rms = np.sqrt(squares[k] / total)
                    for ref in refs:
                        for a in range(0, T, piece):
                            x = w.read(ref.name, k, a, a + piece)
                            w.write(ref.name, a, {k: x + nrng.normal(size=x.shape) * (r.noise * rms)})
    except OSError as exc:
        raise DataError(f"{path}: cannot write: {exc}") from None
    finally:
        torch.set_num_threads(threads)
    return {
        "system": system.name,
        "n_dof": n,
        "trajectories": len(refs),
        "samples": T * len(refs),
        "generator": info,
        "truth": list(TRUTH),
        "seconds": round(time.perf_counter() - started, 3),
    }
