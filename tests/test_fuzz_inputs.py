"""Property: whatever is wrong with an input file, every command exits 0 or 2 with one stderr line,
never a traceback, and never changes the input's bytes.

A valid small data file and a valid CSV log get many seeded random corruptions (bytes truncated,
flipped or zeroed; datasets and columns deleted, renamed, reshaped, retyped to complex / int /
string; NaN, inf and 1e300 inserted; attributes removed or mangled; BOM, other separators, NUL
bytes, ...). On each corrupted data file `delan data info`, `delan train --epochs 1` and
`delan evaluate` run; on each corrupted log `delan data import`, and on what it imports
`data info` and `evaluate`. Run with ``-s`` to see the counts:

    python -m pytest -q -s tests/test_fuzz_inputs.py
"""

import hashlib
import os
import random
import shutil

import h5py
import numpy as np
import pytest

from delan.cli import main

FIELDS = ["t", "q", "qd", "qdd", "tau", "H", "tau_inertial", "tau_gravity"]
N_H5 = 130  # corrupted data files
N_CSV = 180  # corrupted logs
VERBOSE = os.environ.get("DELAN_FUZZ_VERBOSE")  # set: print every case's outcome


def _sha(path):
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# -- corruptions of a data file ----------------------------------------------------------------
def _h5_edit(fn):
    def apply(path, rng):
        with h5py.File(path, "a") as f:
            groups = list(f["trajectories"].values())
            g = rng.choice(groups)
            return fn(f, g, rng)

    apply.__name__ = fn.__name__
    return apply


@_h5_edit
def delete_dataset(f, g, rng):
    k = rng.choice(list(g))
    del g[k]
    return f"deleted {g.name}/{k}"


@_h5_edit
def retype(f, g, rng):
    k = rng.choice(["t", "q", "tau", "qd", "H"])
    kind = rng.choice(["complex", "int", "string", "bool", "float16"])
    a = g[k][()]
    del g[k]
    if kind == "complex":
        g[k] = a * (1 + 0.5j)
    elif kind == "int":
        g[k] = np.round(a * 10).astype(np.int32)
    elif kind == "string":
        g[k] = np.array([str(x) for x in a.ravel()[: len(a)]], dtype=h5py.string_dtype())
    elif kind == "bool":
        g[k] = a > 0
    else:
        g[k] = a.astype(np.float16)
    return f"{g.name}/{k} as {kind}"


@_h5_edit
def insert_value(f, g, rng):
    k = rng.choice(["t", "q", "qd", "qdd", "tau", "H"])
    a = g[k][()].copy()
    value = rng.choice([np.nan, np.inf, -np.inf, 1e300, -1e300, 1e7, 1e30])
    a.flat[rng.randrange(a.size)] = value
    g[k][...] = a
    return f"{g.name}/{k}: one {value}"


@_h5_edit
def reshape(f, g, rng):
    k = rng.choice(["t", "q", "tau", "qd", "H"])
    a = g[k][()]
    how = rng.choice(["transpose", "add axis", "drop column", "shorter", "flatten", "scalar", "empty"])
    b = {
        "transpose": lambda: a.T,
        "add axis": lambda: a[..., None],
        "drop column": lambda: a[..., :-1],
        "shorter": lambda: a[:-3],
        "flatten": lambda: a.ravel(),
        "scalar": lambda: np.float64(1.5),
        "empty": lambda: a[:0],
    }[how]()
    del g[k]
    g[k] = b
    return f"{g.name}/{k}: {how}"


@_h5_edit
def swap_names(f, g, rng):
    a, b = rng.sample([k for k in FIELDS if k in g], 2)
    g.move(a, "__tmp")
    g.move(b, a)
    g.move("__tmp", b)
    return f"{g.name}: {a} <-> {b}"


@_h5_edit
def mangle_attr(f, g, rng):
    key = rng.choice(["format", "version", "n_dof", "joint_names", "joint_types"])
    value = rng.choice([None, 0, -1, 3, 2.5, "two", b"\xff\xfe", np.array([1.0, 2.0]), "prismatic", 10**12])
    if value is None:
        if key in f.attrs:
            del f.attrs[key]
    else:
        f.attrs[key] = value
    return f"attribute {key} = {value!r}"


@_h5_edit
def bad_time(f, g, rng):
    t = g["t"][()].copy()
    how = rng.choice(["repeat", "reverse", "shuffle", "constant", "huge"])
    if how == "repeat":
        t[5] = t[4]
    elif how == "reverse":
        t = t[::-1].copy()
    elif how == "shuffle":
        rng.shuffle(t)
    elif how == "constant":
        t[:] = 1.0
    else:
        t = t * 1e12
    g["t"][...] = t
    return f"{g.name}/t {how}"


@_h5_edit
def structure(f, g, rng):
    how = rng.choice(["no trajectories", "dataset not group", "empty group", "group not dataset", "extra n_dof"])
    if how == "no trajectories":
        del f["trajectories"]
    elif how == "dataset not group":
        name = g.name.split("/")[-1]
        del f["trajectories"][name]
        f["trajectories"][name] = np.zeros(3)
    elif how == "empty group":
        f["trajectories"].create_group("zz")
    elif how == "group not dataset":
        del g["q"]
        g.create_group("q")
    else:
        q = g["q"][()]
        del g["q"]
        g["q"] = np.concatenate([q, q[:, :1]], 1)
    return how


def truncate(path, rng):
    data = open(path, "rb").read()
    n = rng.randrange(0, len(data))
    open(path, "wb").write(data[:n])
    return f"truncated to {n} bytes"


def flip_bytes(path, rng):
    data = bytearray(open(path, "rb").read())
    k = rng.choice([1, 4, 32])
    for _ in range(k):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    open(path, "wb").write(bytes(data))
    return f"{k} bits flipped"


def zero_block(path, rng):
    data = bytearray(open(path, "rb").read())
    i = rng.randrange(len(data))
    n = rng.choice([16, 512, 4096])
    data[i : i + n] = bytes(len(data[i : i + n]))
    open(path, "wb").write(bytes(data))
    return f"{n} bytes zeroed at {i}"


def empty_file(path, rng):
    open(path, "wb").close()
    return "empty file"


def text_file(path, rng):
    open(path, "w").write("t,q0,q1,tau0,tau1\n0,1,2,3,4\n")
    return "a CSV named .h5"


H5_CORRUPTIONS = [
    delete_dataset,
    retype,
    insert_value,
    reshape,
    swap_names,
    mangle_attr,
    bad_time,
    structure,
    truncate,
    flip_bytes,
    zero_block,
    empty_file,
    text_file,
]


# -- corruptions of a CSV log --------------------------------------------------------------------
def _lines(path):
    return open(path, encoding="utf-8").read().splitlines()


def _write(path, lines, encoding="utf-8", newline="\n"):
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write(newline.join(lines) + newline)


def csv_delete_column(path, rng):
    rows = [x.split(",") for x in _lines(path)]
    j = rng.randrange(len(rows[0]))
    _write(path, [",".join(r[:j] + r[j + 1 :]) for r in rows])
    return f"column {j} deleted"


def csv_swap_names(path, rng):
    rows = _lines(path)
    h = rows[0].split(",")
    a, b = rng.sample(range(len(h)), 2)
    h[a], h[b] = h[b], h[a]
    _write(path, [",".join(h)] + rows[1:])
    return f"columns {a}, {b} renamed"


def csv_insert_value(path, rng):
    rows = [x.split(",") for x in _lines(path)]
    i, j = rng.randrange(1, len(rows)), rng.randrange(len(rows[0]))
    v = rng.choice(["nan", "inf", "-inf", "1e300", "1+2j", "abc", "", "1,5", "0x10", "1e-400", "  ", "NaN", "1e7"])
    rows[i][j] = v
    _write(path, [",".join(r) for r in rows])
    return f"cell ({i}, {j}) = {v!r}"


def csv_bom(path, rng):
    _write(path, _lines(path), encoding="utf-8-sig")
    return "UTF-8 BOM"


def csv_separator(path, rng):
    sep = rng.choice([";", "\t", "|", " ", ";;"])
    _write(path, [x.replace(",", sep) for x in _lines(path)])
    return f"separator {sep!r}"


def csv_crlf(path, rng):
    _write(path, _lines(path), newline="\r\n")
    return "CRLF"


def csv_header(path, rng):
    rows = _lines(path)
    how = rng.choice(["none", "duplicate", "twice", "upper", "spaces", "trajectory"])
    if how == "none":
        rows = rows[1:]
    elif how == "duplicate":
        h = rows[0].split(",")
        h[2] = h[1]
        rows[0] = ",".join(h)
    elif how == "twice":
        rows.insert(10, rows[0])
    elif how == "upper":
        rows[0] = rows[0].upper()
    elif how == "spaces":
        rows[0] = ", ".join(rows[0].split(","))
    else:
        rows = [rows[0] + ",trajectory"] + [r + ("," + ("x" if i < 3 else "y")) for i, r in enumerate(rows[1:])]
    _write(path, rows)
    return f"header {how}"


def csv_rows(path, rng):
    rows = _lines(path)
    how = rng.choice(["shuffle", "duplicate", "extra cell", "short", "blank lines", "only header", "one row"])
    body = rows[1:]
    if how == "shuffle":
        rng.shuffle(body)
    elif how == "duplicate":
        body.insert(5, body[5])
    elif how == "extra cell":
        body[3] += ",7"
    elif how == "short":
        body[3] = ",".join(body[3].split(",")[:2])
    elif how == "blank lines":
        body = [x for r in body for x in (r, "")]
    elif how == "only header":
        body = []
    else:
        body = body[:1]
    _write(path, rows[:1] + body)
    return f"rows {how}"


def csv_bytes(path, rng):
    data = bytearray(open(path, "rb").read())
    how = rng.choice(["nul", "latin1", "flip", "truncate", "utf16"])
    if how == "nul":
        data[rng.randrange(len(data))] = 0
    elif how == "latin1":
        data[rng.randrange(len(data))] = 0xE9
    elif how == "flip":
        for _ in range(8):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == "truncate":
        data = data[: rng.randrange(len(data))]
    else:
        data = bytearray(data.decode().encode("utf-16"))
    open(path, "wb").write(bytes(data))
    return f"bytes {how}"


def csv_scale(path, rng):
    rows = [x.split(",") for x in _lines(path)]
    j = rng.randrange(len(rows[0]))
    factor = rng.choice([1e5, 1e8, 1e300, -1e300, 0.0])
    rows[1:] = [r[:j] + [repr(float(r[j]) * factor)] + r[j + 1 :] for r in rows[1:]]
    _write(path, [",".join(r) for r in rows])
    return f"column {j} x {factor}"


CSV_CORRUPTIONS = [
    csv_delete_column,
    csv_swap_names,
    csv_insert_value,
    csv_bom,
    csv_separator,
    csv_crlf,
    csv_header,
    csv_rows,
    csv_bytes,
    csv_scale,
    empty_file,
]


# -- the property --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def valid(tmp_path_factory, character_data):
    """A valid data file, a valid CSV log of it and a run trained on the data file."""
    from delan.data import load_dataset

    d = tmp_path_factory.mktemp("fuzz")
    data = str(d / "valid.h5")
    shutil.copy(character_data(2), data)
    tr = load_dataset(data)["a"]
    log = str(d / "valid.csv")
    with open(log, "w") as f:
        f.write("t,q0,q1,tau0,tau1\n")
        for i in range(len(tr)):
            f.write(",".join(repr(float(x)) for x in (tr.t[i], *tr.q[i], *tr.tau[i])) + "\n")
    run = str(d / "run")
    assert (
        main(["train", data, "-o", run, "--test", "a", "--epochs", "1", "--width", "8", "--depth", "1", "--quiet"]) == 0
    )
    return data, log, run


class Tally:
    def __init__(self):
        self.tried = self.refused = self.succeeded = 0
        self.bad = []  # (case, command, why)
        self.changed = []

    def run(self, capsys, case, argv, inputs):
        before = {p: _sha(p) for p in inputs}
        if VERBOSE:
            import sys

            print(f"RUN {case} | {' '.join(argv[:2])}", file=sys.__stderr__, flush=True)
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: would be exit 2 with usage; not expected here
            code = exc.code
        out, err = capsys.readouterr()
        self.tried += 1
        lines = err.strip().splitlines()
        if VERBOSE:  # past capsys, straight to the terminal
            import sys

            print(
                f"{case} | {argv[0]} {argv[1] if argv[0] == 'data' else ''} -> {code} | {lines[0] if lines else ''}",
                file=sys.__stderr__,
                flush=True,
            )
        if code == 0:
            self.succeeded += 1
        elif code == 2 and len(lines) == 1 and "Traceback" not in err:
            self.refused += 1
        else:
            self.bad.append((case, " ".join(argv[:3]), f"exit {code}: {err.strip()[-400:]}"))
        if "Traceback" in err and code in (0, 2):
            self.bad.append((case, " ".join(argv[:3]), "traceback"))
        if "np.float" in err or "np.int" in err or "np.str_" in err:
            self.bad.append((case, " ".join(argv[:3]), f"a numpy repr in the message: {err.strip()}"))
        for p in inputs:
            if _sha(p) != before[p]:
                self.changed.append((case, " ".join(argv[:3]), p))
        return code


def test_fuzz_inputs(valid, tmp_path, capsys):
    data, log, run = valid
    rng = random.Random(20240611)
    tally = Tally()
    import_left = []
    for i in range(N_H5):
        path = str(tmp_path / f"h{i}.h5")
        shutil.copy(data, path)
        corruption = H5_CORRUPTIONS[i % len(H5_CORRUPTIONS)]
        try:
            what = corruption(path, rng)
        except Exception as exc:  # noqa: BLE001 - a corruption h5py itself refuses to make: skip it
            what = f"(not applied: {exc})"
        case = f"h5 #{i} {corruption.__name__}: {what}"
        tally.run(capsys, case, ["data", "info", path], [path])
        tally.run(
            capsys,
            case,
            [
                "train",
                path,
                "-o",
                str(tmp_path / f"run{i}"),
                "--epochs",
                "1",
                "--width",
                "4",
                "--depth",
                "1",
                "--validation",
                "0",
                "--quiet",
            ],
            [path],
        )
        rollouts = [] if i % 5 == 0 else ["--no-rollouts"]  # every fifth with the (slower) VPT rollouts
        tally.run(capsys, case, ["evaluate", run, path, "--test", "a", *rollouts], [path])
    for i in range(N_CSV):
        path = str(tmp_path / f"c{i}.csv")
        shutil.copy(log, path)
        corruption = CSV_CORRUPTIONS[i % len(CSV_CORRUPTIONS)]
        case = f"csv #{i} {corruption.__name__}: {corruption(path, rng)}"
        out = str(tmp_path / f"c{i}.h5")
        code = tally.run(capsys, case, ["data", "import", path, "-o", out], [path])
        if code != 0 and os.path.exists(out):
            import_left.append(case)
        if code == 0:
            tally.run(capsys, case, ["data", "info", out], [path, out])
            tally.run(capsys, case, ["evaluate", run, out, "--no-rollouts"], [path, out])
    print(
        f"\nfuzz: tried {tally.tried} commands on {N_H5} corrupted data files and {N_CSV} corrupted logs: "
        f"refused cleanly {tally.refused}, succeeded {tally.succeeded}, tracebacks or other exits "
        f"{len(tally.bad)}, inputs changed {len(tally.changed)}, outputs left by refused imports {len(import_left)}"
    )
    assert not tally.bad, "\n".join(map(str, tally.bad[:10]))
    assert not tally.changed, tally.changed[:10]
    assert not import_left, import_left[:10]
    assert tally.refused > 0 and tally.succeeded > 0
