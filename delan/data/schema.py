"""Trajectory data sets and their HDF5 file format (see datasets/README.md for the schema).

Every check raises :class:`~delan.errors.DataError` with one message naming the file, the
trajectory and the field, and what was expected. Files are written atomically.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from delan.errors import DataError
from delan.fileio import atomic_path

FORMAT = "delan-trajectories"
VERSION = 1
REQUIRED = ("t", "q", "tau")
MEASURED = ("q", "qd", "qdd", "tau")
TRUTH = ("H", "tau_inertial", "tau_coriolis", "tau_gravity", "tau_friction")
JOINT_TYPES = ("revolute", "prismatic")
_JOINT_ABBREV = {"r": "revolute", "revolute": "revolute", "p": "prismatic", "prismatic": "prismatic"}


def _where(source: Optional[str], name: Optional[str] = None, field: Optional[str] = None) -> str:
    parts = [source or "<memory>"]
    if name is not None:
        parts.append(f"trajectory {name!r}")
    if field is not None:
        parts.append(f"field {field!r}")
    return ": ".join(parts)


def parse_joint_types(spec, n_dof: int, source: Optional[str] = None) -> List[str]:
    """Joint types from user input: one per joint, each "revolute" or "prismatic".

    ``spec`` is a string or a list of strings: "revolute" / "prismatic" (or "R" / "P") alone
    means every joint; otherwise comma-separated, one per joint ("R,P,R", "revolute,prismatic"),
    case-insensitive. ``source`` names where the text came from in the error (e.g.
    "--joint-types"). Raises DataError (one line) for an unknown type or the wrong count.
    """
    where = source or "joint types"
    n = int(n_dof)
    tokens = spec.split(",") if isinstance(spec, str) else [str(x) for x in spec]
    tokens = [x.strip() for x in tokens]
    allowed = (
        "revolute or prismatic (R/P), one for all joints or one per joint "
        f"comma-separated for n_dof = {n}, e.g. {','.join(['R'] * n)}"
    )
    out = []
    for i, tok in enumerate(tokens):
        kind = _JOINT_ABBREV.get(tok.lower())
        if kind is None:
            raise DataError(f"{where} {spec!r}: joint {i}: {tok!r} is not a joint type; expected {allowed}")
        out.append(kind)
    if len(out) == 1:
        out = out * n
    if len(out) != n:
        raise DataError(f"{where} {spec!r}: {len(out)} joint types for n_dof = {n}; expected {allowed}")
    return out


def check_joint_types(values, n_dof: int, source: Optional[str] = None) -> Optional[List[str]]:
    """Validate stored joint types (exactly n_dof entries, each "revolute" or "prismatic");
    DataError naming the source and attribute 'joint_types' otherwise. None stays None."""
    if values is None:
        return None
    vals = [values] if isinstance(values, str) else list(values)
    vals = [v.decode() if isinstance(v, bytes) else v for v in vals]
    bad = [v for v in vals if not isinstance(v, str) or v not in JOINT_TYPES]
    if len(vals) != int(n_dof) or bad:
        problem = (
            f"{len(vals)} entr{'y' if len(vals) == 1 else 'ies'} for n_dof = {n_dof}"
            if len(vals) != int(n_dof)
            else f"unknown joint type {bad[0]!r}"
        )
        raise DataError(
            f"{_where(source)}: attribute 'joint_types': {problem}; expected a list of {n_dof} "
            f"strings, each 'revolute' or 'prismatic', got {vals!r}"
        )
    return vals


class Trajectory:
    """One recorded or simulated trajectory; numpy float64 arrays, time first.

    t (T,) strictly increasing seconds; q, qd, qdd, tau (T, n); ``truth`` holds whichever of
    H (T, n, n), tau_inertial, tau_coriolis, tau_gravity, tau_friction (T, n) are known;
    ``meta`` is a dict of JSON-friendly notes (e.g. how qd, qdd were estimated).
    """

    def __init__(
        self, name: str, t, q, qd, qdd, tau, truth: Optional[Dict[str, np.ndarray]] = None, meta: Optional[dict] = None
    ):
        self.name = str(name)
        self.t = np.asarray(t, dtype=np.float64)
        self.q = np.asarray(q, dtype=np.float64)
        self.qd = np.asarray(qd, dtype=np.float64)
        self.qdd = np.asarray(qdd, dtype=np.float64)
        self.tau = np.asarray(tau, dtype=np.float64)
        self.truth = {k: np.asarray(v, dtype=np.float64) for k, v in (truth or {}).items()}
        self.meta = dict(meta or {})

    @property
    def n_dof(self) -> int:
        return int(self.q.shape[-1]) if self.q.ndim == 2 else -1

    def __len__(self) -> int:
        return int(self.t.shape[0])

    @property
    def rate(self) -> float:
        """Median sampling rate [Hz]."""
        return float(1.0 / np.median(np.diff(self.t))) if len(self) > 1 else float("nan")

    def fields(self) -> Dict[str, np.ndarray]:
        out = {"t": self.t, "q": self.q, "qd": self.qd, "qdd": self.qdd, "tau": self.tau}
        out.update(self.truth)
        return out

    def validate(self, n_dof: Optional[int] = None, source: Optional[str] = None) -> None:
        """Check shapes, finiteness, increasing time; raise DataError naming file/trajectory/field."""
        validate_arrays(self.name, self.fields(), n_dof, source)

    def __repr__(self) -> str:
        return f"Trajectory({self.name!r}, samples={len(self)}, n_dof={self.n_dof}, truth={sorted(self.truth)})"


def validate_arrays(name: str, fields: Dict[str, np.ndarray], n_dof: Optional[int], source: Optional[str]) -> None:
    """The checks of :meth:`Trajectory.validate` on a dict of arrays."""
    for f in REQUIRED:
        if f not in fields or fields[f] is None:
            raise DataError(f"{_where(source, name, f)}: required field is missing")
    t = np.asarray(fields["t"])
    if t.ndim != 1:
        raise DataError(f"{_where(source, name, 't')}: expected shape (T,), got {t.shape}")
    T = t.shape[0]
    if T < 2:
        raise DataError(f"{_where(source, name, 't')}: needs at least 2 samples, got {T}")
    q = np.asarray(fields["q"])
    n = n_dof if n_dof is not None else (q.shape[1] if q.ndim == 2 else None)
    if n is None:
        raise DataError(f"{_where(source, name, 'q')}: expected shape (T, n_dof) = ({T}, n), got {q.shape}")
    for f, v in fields.items():
        if v is None:
            continue
        v = np.asarray(v)
        expected = (T,) if f == "t" else (T, n, n) if f == "H" else (T, n)
        if f not in ("t", "H") + MEASURED + TRUTH:
            continue  # unknown extra fields are kept but not checked
        if v.shape != expected:
            what = "(T,)" if f == "t" else "(T, n_dof, n_dof)" if f == "H" else "(T, n_dof)"
            raise DataError(f"{_where(source, name, f)}: expected shape {what} = {expected}, got {v.shape}")
        if not np.issubdtype(v.dtype, np.floating):
            what = (
                "complex numbers"
                if np.issubdtype(v.dtype, np.complexfloating)
                else "integers"
                if np.issubdtype(v.dtype, np.integer)
                else "booleans"
                if v.dtype == bool
                else "no numbers"
            )
            raise DataError(
                f"{_where(source, name, f)}: expected real floating-point numbers (float32 or float64), "
                f"got {what} (dtype {v.dtype})"
            )
        bad = ~np.isfinite(v)
        if bad.any():
            idx = np.argwhere(bad)[0]
            kind = "NaN" if np.isnan(v[tuple(idx)]) else "inf"
            raise DataError(
                f"{_where(source, name, f)}: {int(bad.sum())} non-finite values "
                f"(first: {kind} at sample {int(idx[0])}); all values must be finite"
            )
    dt = np.diff(t)
    if np.any(dt <= 0):
        k = int(np.argmax(dt <= 0))
        raise DataError(
            f"{_where(source, name, 't')}: time must be strictly increasing "
            f"(t[{k + 1}] = {float(t[k + 1])!r} <= t[{k}] = {float(t[k])!r})"
        )


# Magnitudes beyond which values are taken for wrong units or corrupt data: refused when a file
# or log is loaded (unless the file says allow_large_values; `delan data import
# --allow-large-values` records that), flagged by `delan data info`.
PLAUSIBLE = {
    "t": 1e10,
    "q": 1e4,
    "qd": 1e5,
    "qdd": 1e7,
    "tau": 1e6,
    "H": 1e6,
    "tau_inertial": 1e6,
    "tau_coriolis": 1e6,
    "tau_gravity": 1e6,
    "tau_friction": 1e6,
}
ALLOW_LARGE = "allow_large_values"  # file attribute: values beyond PLAUSIBLE are real


def implausible(fields: Dict[str, np.ndarray]) -> List[Tuple[str, int, float, int]]:
    """Fields with values beyond :data:`PLAUSIBLE`: [(field, count, largest magnitude, its sample)]."""
    out = []
    for f, limit in PLAUSIBLE.items():
        v = fields.get(f)
        if v is None:
            continue
        mag = np.abs(np.asarray(v, dtype=np.float64))
        big = mag > limit
        if big.any():
            k = int(np.argmax(mag))
            out.append((f, int(big.sum()), float(mag.flat[k]), int(np.unravel_index(k, mag.shape)[0])))
    return out


def describe_implausible(f: str, count: int, largest: float, sample: int) -> str:
    return (
        f"{count} value{'s' if count != 1 else ''} beyond the plausible range |{f}| <= {PLAUSIBLE[f]:g} "
        f"(largest {largest:.4g} at sample {sample})"
    )


def check_plausible(name: str, fields: Dict[str, np.ndarray], source: Optional[str], hint: str) -> None:
    """DataError naming the first field with values beyond :data:`PLAUSIBLE` (see there)."""
    bad = implausible(fields)
    if bad:
        raise DataError(
            f"{_where(source, name, bad[0][0])}: {describe_implausible(*bad[0])}; wrong units or corrupt data? {hint}"
        )


class Dataset:
    """An ordered collection of trajectories with the same n_dof.

    ``ds["a"]`` gets a trajectory by name, ``ds.names`` lists them in file order.
    ``joint_types`` is None (not recorded) or one "revolute" / "prismatic" per joint; revolute
    joints enter the networks as (sin q, cos q) (see :meth:`revolute_mask`).
    """

    def __init__(
        self,
        trajectories: Sequence[Trajectory],
        n_dof: Optional[int] = None,
        joint_names: Optional[Sequence[str]] = None,
        system: Optional[str] = None,
        attrs: Optional[dict] = None,
        source: Optional[str] = None,
        joint_types: Optional[Sequence[str]] = None,
    ):
        self.trajectories: Dict[str, Trajectory] = {}
        for tr in trajectories:
            if tr.name in self.trajectories:
                raise DataError(f"{_where(source, tr.name)}: duplicate trajectory name")
            self.trajectories[tr.name] = tr
        if n_dof is None:
            if not self.trajectories:
                raise DataError(f"{_where(source)}: a dataset needs n_dof or at least one trajectory")
            n_dof = next(iter(self.trajectories.values())).n_dof
        self.n_dof = int(n_dof)
        self.joint_names = list(joint_names) if joint_names is not None else [f"q{i}" for i in range(self.n_dof)]
        self.system = system
        self.attrs = dict(attrs or {})
        self.source = source
        self.joint_types: Optional[List[str]] = None if joint_types is None else list(joint_types)
        self.validate()

    # -- access ------------------------------------------------------------------------------
    @property
    def names(self) -> List[str]:
        return list(self.trajectories)

    def __getitem__(self, name: str) -> Trajectory:
        try:
            return self.trajectories[name]
        except KeyError:
            raise DataError(
                f"{_where(self.source, name)}: no such trajectory; valid names: {', '.join(self.names)}"
            ) from None

    def __len__(self) -> int:
        return len(self.trajectories)

    def __iter__(self) -> Iterator[Trajectory]:
        return iter(self.trajectories.values())

    def __contains__(self, name: str) -> bool:
        return name in self.trajectories

    @property
    def n_samples(self) -> int:
        return sum(len(tr) for tr in self)

    @property
    def truth_fields(self) -> List[str]:
        """Ground-truth fields present in every trajectory."""
        if not self.trajectories:
            return []
        return [f for f in TRUTH if all(f in tr.truth for tr in self)]

    def revolute_mask(self) -> Optional[List[bool]]:
        """[True for each revolute joint], or None when the joint types are not recorded."""
        return None if self.joint_types is None else [t == "revolute" for t in self.joint_types]

    def validate(self) -> None:
        if len(self.joint_names) != self.n_dof:
            raise DataError(f"{_where(self.source)}: {len(self.joint_names)} joint names for n_dof = {self.n_dof}")
        self.joint_types = check_joint_types(self.joint_types, self.n_dof, self.source)
        for tr in self:
            if tr.q.ndim == 2 and tr.n_dof != self.n_dof:
                raise DataError(
                    f"{_where(self.source, tr.name, 'q')}: has {tr.n_dof} degrees of freedom, "
                    f"expected n_dof = {self.n_dof} like the rest of the file; "
                    f"expected shape ({len(tr)}, {self.n_dof}), got {tr.q.shape}"
                )
            tr.validate(self.n_dof, self.source)

    def split(self, names: Sequence[str]) -> Tuple[Dataset, Dataset]:
        """(the named trajectories, all others); unknown names raise DataError listing valid ones."""
        names = list(names)
        unknown = [x for x in names if x not in self.trajectories]
        if unknown:
            raise DataError(
                f"{_where(self.source)}: unknown trajectory names {unknown}; valid names: {', '.join(self.names)}"
            )
        chosen = [self.trajectories[x] for x in names]
        rest = [tr for tr in self if tr.name not in set(names)]
        mk = lambda trs: Dataset(
            trs,
            self.n_dof,
            self.joint_names,
            self.system,
            self.attrs,
            self.source,  # noqa: E731
            joint_types=self.joint_types,
        )
        return mk(chosen), mk(rest)

    def concatenate(self) -> Dict[str, np.ndarray]:
        """Stack all samples: q, qd, qdd, tau (N, n), t (N,), the common truth fields, and
        ``trajectory`` (N,) the index of each sample's trajectory in :attr:`names`."""
        trs = list(self)
        out = {f: np.concatenate([getattr(tr, f) for tr in trs]) for f in ("t", "q", "qd", "qdd", "tau")}
        for f in self.truth_fields:
            out[f] = np.concatenate([tr.truth[f] for tr in trs])
        out["trajectory"] = np.concatenate([np.full(len(tr), i) for i, tr in enumerate(trs)])
        return out

    def __repr__(self) -> str:
        return (
            f"Dataset(system={self.system!r}, n_dof={self.n_dof}, trajectories={len(self)}, "
            f"samples={self.n_samples}, joint_types={self.joint_types})"
        )


# -- files -----------------------------------------------------------------------------------
def save_dataset(ds: Dataset, path: str, compression: Optional[str] = "gzip") -> None:
    """Write ``ds`` to an HDF5 file atomically (temporary file in the same folder, then rename)."""
    import h5py

    ds.validate()
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DataError(f"{path}: folder {folder} does not exist")
    with atomic_path(path) as tmp:
        # Damage must give an error, never a hang: libver v108+ puts checksums on the superblock and
        # object headers (readable by HDF5 >= 1.8), and text attributes are fixed-length UTF-8 kept
        # inside those checksummed headers; variable-length strings live in the global heap, which
        # has no checksum (a few zeroed bytes there sent the HDF5 library into an endless loop).
        with h5py.File(tmp, "w", libver=("v108", "latest")) as f:
            f.attrs["format"] = _text(FORMAT)
            f.attrs["version"] = VERSION
            f.attrs["n_dof"] = ds.n_dof
            if ds.system is not None:
                f.attrs["system"] = _text(ds.system)
            f.attrs["joint_names"] = _text(ds.joint_names)
            if ds.joint_types is not None:
                f.attrs["joint_types"] = _text(ds.joint_types)
            for k, v in ds.attrs.items():
                structured = isinstance(v, (dict, list))
                f.attrs[k] = _text(json.dumps(v)) if structured else _text(v) if isinstance(v, str) else v
            grp = f.create_group("trajectories", track_order=True)
            for tr in ds:
                g = grp.create_group(tr.name)
                for k, v in tr.fields().items():
                    g.create_dataset(
                        k,
                        data=v,
                        compression=compression if v.size > 64 else None,
                        shuffle=compression is not None and v.size > 64,
                    )
                for k, v in tr.meta.items():
                    g.attrs[k] = _text(json.dumps(v))


def _text(value):
    """A str (or list of str) as a fixed-length UTF-8 HDF5 string (array): stored in the object
    header, under its checksum (see :func:`save_dataset`); read back as bytes, decoded by _attr_str."""
    import h5py

    if isinstance(value, str):
        raw = value.encode("utf-8")
        return np.array(raw, dtype=h5py.string_dtype("utf-8", max(len(raw), 1)))
    raw = [str(x).encode("utf-8") for x in value]
    return np.array(raw, dtype=h5py.string_dtype("utf-8", max([len(r) for r in raw] + [1])))


def _first_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)  # KeyError quotes its text
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return lines[0] if lines else type(exc).__name__


def load_dataset(path: str, estimate_missing: bool = True, check_range: bool = True) -> Dataset:
    """Read and validate a data file. Missing qd/qdd are estimated from q (Savitzky-Golay, see
    :mod:`delan.data.derivatives`) when ``estimate_missing``; the trajectory's ``meta`` says so.

    ``check_range``: refuse values beyond :data:`PLAUSIBLE` (wrong units, corrupt data) unless
    the file's attribute ``allow_large_values`` is set.

    Raises DataError (one line) naming the file, trajectory and field for anything that breaks
    the schema, including unreadable, truncated or corrupt files.
    """
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, not a data file")
    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, but also others for odd files
        raise DataError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {_first_line(exc)}") from None
    try:
        with f:
            return _read(f, path, estimate_missing, check_range)
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{path}: too large to load into memory") from None
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes h5py or numpy raise
        raise DataError(
            f"{path}: unreadable (truncated or corrupt?): {type(exc).__name__}: {_first_line(exc)}"
        ) from None


def _show(v) -> str:
    """An attribute value in a message: numpy scalars as plain numbers, text quoted."""
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, np.ndarray):
        return "[" + ", ".join(_show(x) for x in v.ravel()[:5]) + (", ..." if v.size > 5 else "") + "]"
    if isinstance(v, np.generic):
        v = v.item()
    return repr(v) if isinstance(v, str) else str(v)


def _attr_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def _int_attr(f, key: str, path: str) -> int:
    v = f.attrs[key]
    v = v.item() if isinstance(v, np.ndarray) and v.size == 1 else v.item() if isinstance(v, np.generic) else v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise DataError(f"{path}: attribute {key!r} must be an integer, got {_show(v)}")
    return int(v)


def _read(f, path: str, estimate_missing: bool, check_range: bool = True) -> Dataset:
    import h5py

    from delan.data.sizes import check_memory, format_bytes

    fmt = f.attrs.get("format")
    if fmt is None or not isinstance(fmt, (bytes, str)) or _attr_str(fmt) != FORMAT:
        got = "no such attribute" if fmt is None else f"got {_show(fmt)}"
        raise DataError(f"{path}: attribute 'format' must be {FORMAT!r} ({got}); not a DeLaN data file")
    version = _int_attr(f, "version", path) if "version" in f.attrs else -1
    if version != VERSION:
        raise DataError(f"{path}: unsupported format version {version} (this library reads {VERSION})")
    if "n_dof" not in f.attrs:
        raise DataError(f"{path}: required attribute 'n_dof' is missing")
    n = _int_attr(f, "n_dof", path)
    if n < 1:
        raise DataError(f"{path}: attribute 'n_dof' must be >= 1, got {n}")
    if "trajectories" in f and isinstance(f["trajectories"], h5py.Group):
        total = sum(
            d.size * d.dtype.itemsize
            for g in f["trajectories"].values()
            if isinstance(g, h5py.Group)
            for d in g.values()
            if isinstance(d, h5py.Dataset)
        )
        check_memory(
            3.0 * total, f"{path}: its arrays ({format_bytes(total)} as stored)", "split the file", error=DataError
        )
    joint_names = [_attr_str(x) for x in np.atleast_1d(f.attrs["joint_names"])] if "joint_names" in f.attrs else None
    system = _attr_str(f.attrs["system"]) if "system" in f.attrs else None
    joint_types = None
    if "joint_types" in f.attrs:
        raw = f.attrs["joint_types"]
        if isinstance(raw, (bytes, str)):
            raw = _attr_str(raw)
            try:
                raw = json.loads(raw)  # also accept a JSON list written as text
            except ValueError:
                pass
        else:
            raw = [_attr_str(x) for x in np.atleast_1d(raw)]
        joint_types = check_joint_types(raw, n, path)
    extra = {}
    for k, v in f.attrs.items():
        if k in ("format", "version", "n_dof", "system", "joint_names", "joint_types"):
            continue
        v = _attr_str(v) if isinstance(v, (bytes, str)) else v.item() if hasattr(v, "item") else v
        try:
            extra[k] = json.loads(v) if isinstance(v, str) else v
        except ValueError:
            extra[k] = v
    if "trajectories" not in f or not isinstance(f["trajectories"], h5py.Group):
        raise DataError(f"{path}: required group '/trajectories' is missing")
    trs = []
    for name, g in f["trajectories"].items():
        if not isinstance(g, h5py.Group):
            raise DataError(f"{_where(path, name)}: expected a group of fields, got a dataset")
        fields = {}
        for k, d in g.items():
            if not isinstance(d, h5py.Dataset):
                raise DataError(f"{_where(path, name, k)}: expected an array, got a group")
            fields[k] = np.asarray(d[()])
        for req in REQUIRED:
            if req not in fields:
                raise DataError(f"{_where(path, name, req)}: required field is missing")
        meta = {}
        for k, v in g.attrs.items():
            try:
                meta[k] = json.loads(_attr_str(v))
            except ValueError:
                meta[k] = _attr_str(v)
        # validate before estimating so errors point at the stored data
        validate_arrays(name, fields, n, path)
        if check_range and not extra.get(ALLOW_LARGE):
            check_plausible(
                name,
                fields,
                path,
                "If the values are real, set the file's attribute "
                f"{ALLOW_LARGE} = 1 (`delan data import --allow-large-values` does for logs)",
            )
        if "qd" not in fields or "qdd" not in fields:
            if not estimate_missing:
                miss = "qd" if "qd" not in fields else "qdd"
                raise DataError(f"{_where(path, name, miss)}: field is missing")
            from delan.data.derivatives import fill_derivatives

            fields["qd"], fields["qdd"], notes = fill_derivatives(
                fields["t"], fields["q"], fields.get("qd"), fields.get("qdd"), source=_where(path, name)
            )
            meta.update(notes)
        truth = {k: fields[k] for k in TRUTH if k in fields}
        trs.append(Trajectory(name, fields["t"], fields["q"], fields["qd"], fields["qdd"], fields["tau"], truth, meta))
    if not trs:
        raise DataError(f"{path}: group '/trajectories' holds no trajectories")
    return Dataset(trs, n, joint_names, system, extra, source=path, joint_types=joint_types)
