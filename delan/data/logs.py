"""Import recorded robot logs (CSV or NumPy .npz) into a :class:`Dataset`.

Column / key naming convention (CSV header row required; cells separated by commas, semicolons
(then a decimal comma is accepted too) or tabs, told from the header; a UTF-8 byte-order mark is
ignored):

* ``t``                       time [s] (optional when a fixed ``rate`` is given instead)
* ``q0 .. q{n-1}``            joint positions, or ``q_<joint>`` with joint names (``q_shoulder``)
* ``tau0 .. tau{n-1}``        applied torques, or ``tau_<joint>``; required
* ``qd*``, ``qdd*``           optional velocities / accelerations, same naming
* ``trajectory``              optional label column: rows with equal labels form one trajectory

A ``.npz`` holds arrays ``q`` (T, n) and ``tau`` (T, n), optionally ``t`` (T,), ``qd``, ``qdd``
and ``joint_names`` (n,). Missing qd / qdd are estimated from q (:mod:`delan.data.derivatives`:
Savitzky-Golay on a uniform clock, local polynomial fits on the actual time stamps on a jittered
one); measured ones are kept. Each trajectory's meta records per field what was measured and
what estimated (``sources``), how (``derivatives``) and, with ``despike=True``, how many torque
samples per joint the Hampel filter replaced (``despike``).
"""

from __future__ import annotations

import csv
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from delan.data._options import bind_options
from delan.data.derivatives import DESPIKE_THRESHOLD, DESPIKE_WINDOW, fill_derivatives, hampel
from delan.data.schema import Dataset, Trajectory, parse_joint_types
from delan.data.sizes import format_number
from delan.errors import DataError

_FIELDS = ("qdd", "qd", "tau", "q")  # longest prefix first so "qd0" is not read as q


def _classify(col: str) -> Optional[Tuple[str, str]]:
    """('q', '0') for 'q0', ('qd', 'shoulder') for 'qd_shoulder'; None for other columns."""
    for f in _FIELDS:
        m = re.fullmatch(rf"{f}(\d+)|{f}_(.+)", col)
        if m:
            return f, m.group(1) if m.group(1) is not None else m.group(2)
    return None


def _joint_columns(
    header: List[str], path: str, n_dof: Optional[int], stem: str
) -> Tuple[List[str], Dict[str, List[str]]]:
    """Joint labels (in order) and, for each present field, its columns in joint order."""
    by_field: Dict[str, Dict[str, str]] = {}
    for col in header:
        c = _classify(col)
        if c:
            by_field.setdefault(c[0], {})[c[1]] = col
    if "q" not in by_field:
        raise DataError(
            f"{path}: trajectory {stem!r}: field 'q': no position columns; expected columns named "
            f"q0..q{{n-1}} or q_<joint>, got {header}"
        )
    labels = list(by_field["q"])
    if all(x.isdigit() for x in labels):
        n = max(int(x) for x in labels) + 1
        if n_dof is not None:
            n = max(n, int(n_dof))
        labels = [str(i) for i in range(n)]
        style = "{f}{j}"
    else:
        style = "{f}_{j}"
    if n_dof is not None and len(labels) != int(n_dof):
        raise DataError(
            f"{path}: trajectory {stem!r}: field 'q': found {len(labels)} position columns, expected n_dof = {n_dof}"
        )
    cols = {}
    for f in ("q", "tau", "qd", "qdd"):
        if f not in by_field and f in ("qd", "qdd"):
            continue
        have = by_field.get(f, {})
        missing = [style.format(f=f, j=j) for j in labels if j not in have]
        if missing:
            expected = ", ".join(style.format(f=f, j=j) for j in labels)
            raise DataError(
                f"{path}: trajectory {stem!r}: field {f!r}: missing column {missing[0]!r} (expected columns {expected})"
            )
        cols[f] = [have[j] for j in labels]
    names = [j if style == "{f}_{j}" else f"q{j}" for j in labels]
    return names, cols


def _time(n_rows: int, t: Optional[np.ndarray], rate: Optional[float], path: str, name: str) -> np.ndarray:
    if t is not None:
        return t
    if rate is None:
        raise DataError(f"{path}: trajectory {name!r}: field 't': no time column; pass the sampling rate (--rate HZ)")
    _check_rate(rate, path)
    return np.arange(n_rows) / float(rate)


def _check_rate(rate, path):
    if rate is not None and not (np.isfinite(rate) and rate > 0):
        raise DataError(
            f"{path}: the sampling rate (--rate) must be a positive number of Hz, got {format_number(rate)}"
        )


def _make(name, t, q, tau, qd, qdd, path, window, polyorder, n, despike=None, allow_large=False) -> Trajectory:
    from delan.data.schema import check_plausible, validate_arrays

    fields = {"t": t, "q": q, "tau": tau, "qd": qd, "qdd": qdd}
    validate_arrays(name, fields, n, path)
    if not allow_large:
        check_plausible(name, fields, path, "If the values are real, import with --allow-large-values")
    qd, qdd, meta = fill_derivatives(t, q, qd, qdd, window, polyorder, source=f"{path}: trajectory {name!r}")
    if despike is not None:
        w, k = despike
        tau, mask = hampel(np.asarray(tau, float), w, k)
        meta["despike"] = {
            "method": "hampel",
            "field": "tau",
            "window": int(w),
            "threshold": float(k),
            "scale": "1.4826 MAD / sqrt(6) of second differences, the larger of over 10 windows and "
            "over the whole channel",
            "replaced": [int(x) for x in mask.sum(0)],
            "samples": int(len(t)),
        }
    return Trajectory(name, t, q, qd, qdd, tau, meta=meta)


def _options(path, despike, despike_window, despike_threshold):
    if not despike:
        return None
    w, k = int(despike_window), float(despike_threshold)
    if w < 3 or w % 2 == 0:
        raise DataError(f"{path}: despike window must be an odd number of samples >= 3, got {despike_window}")
    if not (k > 0 and np.isfinite(k)):
        raise DataError(f"{path}: despike threshold must be a positive number of scaled MADs, got {despike_threshold}")
    return w, k


_SEP_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs"}


def _read_rows(path: str):
    """Non-empty rows of a CSV log as [(line number, cells)] and the separator, told from the
    header: the one of , ; tab that splits it into the most cells. A UTF-8 BOM is dropped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot read CSV log: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read CSV log: {exc.strerror or exc}") from None
    if "\0" in text:
        raise DataError(f"{path}: cannot read CSV log: it holds NUL bytes (a binary file?)")
    lines = text.splitlines()
    first = next((x for x in lines if x.strip()), "")
    sep = max(_SEP_NAMES, key=lambda d: (len(first.split(d)), d == ","))
    try:
        rows = [
            (i, r) for i, r in enumerate(csv.reader(lines, delimiter=sep), start=1) if r and any(c.strip() for c in r)
        ]
    except csv.Error as exc:
        raise DataError(f"{path}: cannot read CSV log: {exc}") from None
    if rows and len(rows[0][1]) == 1 and len(first.split()) > 1:
        raise DataError(
            f"{path}: header {first.strip()[:80]!r}: one column only; cells must be separated by commas, "
            f"semicolons or tabs"
        )
    return rows, sep


def _attrs(path, allow_large_values):
    from delan.data.schema import ALLOW_LARGE

    attrs = {"imported_from": os.path.basename(path)}
    if allow_large_values:
        attrs[ALLOW_LARGE] = True
    return attrs


def _types(path, joint_types, n):
    return None if joint_types is None else parse_joint_types(joint_types, n, source=f"{path}: joint_types")


def load_csv(
    path: str,
    rate: Optional[float] = None,
    window: Optional[int] = None,
    polyorder: int = 3,
    n_dof: Optional[int] = None,
    despike: bool = False,
    despike_window: int = DESPIKE_WINDOW,
    despike_threshold: float = DESPIKE_THRESHOLD,
    joint_types=None,
    allow_large_values: bool = False,
) -> Dataset:
    """Read a CSV log (naming convention in the module docstring) into a Dataset.

    ``despike``: Hampel filter on tau per joint (:func:`delan.data.derivatives.hampel`).
    ``joint_types``: recorded in the dataset (:func:`delan.data.parse_joint_types` syntax).
    ``allow_large_values``: accept values beyond :data:`delan.data.schema.PLAUSIBLE` (refused
    otherwise, as wrong units or corrupt data); the dataset records it (``attrs``), so loading
    its file accepts them too.
    """
    path = os.fspath(path)
    spikes = _options(path, despike, despike_window, despike_threshold)
    _check_rate(rate, path)
    rows, sep = _read_rows(path)
    if len(rows) < 3:
        raise DataError(f"{path}: expected a header row and at least 2 data rows, got {len(rows)} rows")
    header = [c.strip() for c in rows[0][1]]
    seen = set()
    for c in header:
        if c in seen and c:
            raise DataError(f"{path}: header: column {c!r} appears twice")
        seen.add(c)
    stem = os.path.splitext(os.path.basename(path))[0]
    names, cols = _joint_columns(header, path, n_dof, stem)
    index = {c: i for i, c in enumerate(header)}
    label_col = index.get("trajectory")
    numeric = [c for c in header if c != "trajectory"]
    data = np.empty((len(rows) - 1, len(numeric)))
    for r, (line, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(
                f"{path}: line {line}: {len(row)} cells, expected {len(header)} like the header "
                f"(cells separated by {_SEP_NAMES[sep]})"
            )
        for j, c in enumerate(numeric):
            cell = row[index[c]].strip()
            try:
                data[r, j] = float(cell if sep != ";" else cell.replace(",", "."))
            except ValueError:
                raise DataError(f"{path}: line {line}: column {c!r}: not a number: {cell!r}") from None
    col = {c: data[:, j] for j, c in enumerate(numeric)}
    labels = np.array([row[label_col].strip() for _, row in rows[1:]]) if label_col is not None else None
    groups = (
        [(stem, np.arange(len(data)))]
        if labels is None
        else [(lab, np.flatnonzero(labels == lab)) for lab in dict.fromkeys(labels.tolist())]
    )
    trs = []
    for name, idx in groups:
        get = lambda f, idx=idx: None if f not in cols else np.stack([col[c][idx] for c in cols[f]], -1)  # noqa: E731
        t = _time(len(idx), col["t"][idx] if "t" in col else None, rate, path, name)
        trs.append(
            _make(
                name,
                t,
                get("q"),
                get("tau"),
                get("qd"),
                get("qdd"),
                path,
                window,
                polyorder,
                len(names),
                spikes,
                allow_large_values,
            )
        )
    return Dataset(
        trs,
        len(names),
        names,
        attrs=_attrs(path, allow_large_values),
        source=path,
        joint_types=_types(path, joint_types, len(names)),
    )


def load_npz(path: str, **options: Any) -> Dataset:
    """Read a NumPy .npz log (keys q, tau [, t, qd, qdd, joint_names]) into a Dataset;
    ``options``: the keyword options of :func:`load_csv`."""
    # load_csv's signature is the one place the import options and their defaults are written
    o = bind_options(load_csv, path, **options)
    path = os.fspath(path)
    spikes = _options(path, o.despike, o.despike_window, o.despike_threshold)
    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):  # a plain .npy renamed .npz gives an array
            raise DataError(f"{path}: not an .npz archive of named arrays (a single .npy array?)")
        with z:
            arrays = {k: z[k] for k in z.files}
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{path}: cannot read .npz log: too large for memory") from None
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib, numpy: whatever a damaged archive raises
        lines = [x for x in str(exc).splitlines() if x.strip()]
        raise DataError(
            f"{path}: cannot read .npz log ({type(exc).__name__}: {lines[0] if lines else 'no message'})"
        ) from None
    name = os.path.splitext(os.path.basename(path))[0]
    for req in ("q", "tau"):
        if req not in arrays:
            raise DataError(
                f"{path}: trajectory {name!r}: field {req!r}: required array is missing (found {sorted(arrays)})"
            )
    q = arrays["q"]
    if q.ndim != 2:
        raise DataError(f"{path}: trajectory {name!r}: field 'q': expected shape (T, n_dof), got {q.shape}")
    n = q.shape[1]
    if o.n_dof is not None and n != int(o.n_dof):
        raise DataError(
            f"{path}: trajectory {name!r}: field 'q': expected shape ({q.shape[0]}, {o.n_dof}), got {q.shape}"
        )
    t = _time(q.shape[0], arrays.get("t"), o.rate, path, name)
    joint_names = [str(x) for x in np.atleast_1d(arrays["joint_names"])] if "joint_names" in arrays else None
    tr = _make(
        name,
        t,
        q,
        arrays["tau"],
        arrays.get("qd"),
        arrays.get("qdd"),
        path,
        o.window,
        o.polyorder,
        n,
        spikes,
        o.allow_large_values,
    )
    return Dataset(
        [tr],
        n,
        joint_names,
        attrs=_attrs(path, o.allow_large_values),
        source=path,
        joint_types=_types(path, o.joint_types, n),
    )


def load_log(path: str, **kwargs) -> Dataset:
    """Import a ``.csv`` or ``.npz`` log by its extension (see :func:`load_csv`, :func:`load_npz`).

    Keyword options: rate, window, polyorder, n_dof, despike (Hampel filter on tau),
    despike_window, despike_threshold, joint_types, allow_large_values.
    """
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if ext == ".csv":
        return load_csv(path, **kwargs)
    if ext == ".npz":
        return load_npz(path, **kwargs)
    raise DataError(f"{path}: unknown log format {ext!r}; expected .csv or .npz")
