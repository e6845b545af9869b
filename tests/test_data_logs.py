"""Importing CSV / .npz logs: naming convention, derivative estimation, clear errors, CLI."""

import os

import numpy as np
import pytest

from delan.cli import main
from delan.data import load_dataset, load_log
from delan.errors import DataError
from delan.systems import make_system
from delan.trajectories import fourier_trajectories

RATE = 250.0


@pytest.fixture(scope="module")
def known():
    s = make_system("two-link")
    ref = fourier_trajectories(s, 1, 4.0, np.random.default_rng(3))[0]
    t = np.arange(0, 4.0, 1 / RATE)
    q, qd, qdd = ref(t)
    tau = s.inverse_dynamics(*(__import__("torch").as_tensor(x) for x in (q, qd, qdd))).numpy()
    return t, q, qd, qdd, tau


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(r if isinstance(r[0], str) else (f"{x:.17g}" for x in r)) + "\n")


def test_csv_indexed_columns(known, tmp_path):
    t, q, qd, qdd, tau = known
    path = tmp_path / "robot.csv"
    write_csv(path, ["t", "q0", "q1", "tau0", "tau1"], np.column_stack([t, q, tau]))
    ds = load_log(str(path))
    assert ds.names == ["robot"] and ds.n_dof == 2 and ds.joint_names == ["q0", "q1"]
    tr = ds["robot"]
    np.testing.assert_array_equal(tr.q, q)
    np.testing.assert_array_equal(tr.tau, tau)
    assert tr.meta["derivatives"]["window"] == 25
    interior = slice(20, -20)
    assert np.sqrt(np.mean((tr.qdd[interior] - qdd[interior]) ** 2)) < 0.01 * np.abs(qdd).max()


def test_csv_named_columns_rate_and_groups(known, tmp_path):
    t, q, qd, qdd, tau = known
    path = tmp_path / "named.csv"
    labels = np.where(np.arange(len(t)) < 500, "first", "second")
    rows = [[lab] + [f"{x:.17g}" for x in r] for lab, r in zip(labels, np.column_stack([q, qd, tau]))]
    columns = ["trajectory", "q_shoulder", "q_elbow", "qd_shoulder", "qd_elbow", "tau_shoulder", "tau_elbow"]
    write_csv(path, columns, rows)
    ds = load_log(str(path), rate=RATE)
    assert ds.names == ["first", "second"] and ds.joint_names == ["shoulder", "elbow"]
    assert len(ds["first"]) == 500 and len(ds["second"]) == len(t) - 500
    np.testing.assert_allclose(ds["second"].t[1] - ds["second"].t[0], 1 / RATE)
    np.testing.assert_array_equal(ds["first"].qd, qd[:500])  # given velocities are kept
    assert "derivatives" in ds["first"].meta  # qdd was still estimated


def test_npz(known, tmp_path):
    t, q, qd, qdd, tau = known
    path = tmp_path / "log.npz"
    np.savez(path, q=q, tau=tau, joint_names=np.array(["s", "e"]))
    ds = load_log(str(path), rate=RATE)
    assert ds.names == ["log"] and ds.joint_names == ["s", "e"]
    np.testing.assert_allclose(ds["log"].t[-1], t[-1])
    np.savez(tmp_path / "notau.npz", q=q)
    with pytest.raises(DataError, match=r"notau.npz: trajectory 'notau': field 'tau': required array is missing"):
        load_log(str(tmp_path / "notau.npz"), rate=RATE)


def _rows(known, n=50):
    t, q, qd, qdd, tau = known
    return np.column_stack([t, q, tau])[:n]


@pytest.mark.parametrize("case", ["missing column", "gap", "no q", "nan", "text", "no time", "n_dof", "short row"])
def test_bad_csv(case, known, tmp_path):
    path = tmp_path / "log.csv"
    header, rows = ["t", "q0", "q1", "tau0", "tau1"], _rows(known)
    opts = {}
    if case == "missing column":
        header, rows = ["t", "q0", "q1", "tau0"], rows[:, :4]
        pattern = r"log.csv: trajectory 'log': field 'tau': missing column 'tau1' \(expected columns tau0, tau1\)"
    elif case == "gap":
        header, rows = ["t", "q0", "q2", "tau0", "tau1", "tau2"], np.column_stack([rows, rows[:, 1]])
        pattern = r"field 'q': missing column 'q1'"
    elif case == "no q":
        header = ["t", "x0", "x1", "tau0", "tau1"]
        pattern = r"field 'q': no position columns"
    elif case == "nan":
        rows = rows.copy()
        rows[10, 2] = np.nan
        pattern = r"trajectory 'log': field 'q': 1 non-finite values \(first: NaN at sample 10\)"
    elif case == "text":
        rows = [[f"{x:.6g}" for x in r] for r in rows]
        rows[3][4] = "oops"
        pattern = r"line 5: column 'tau1': not a number: 'oops'"
    elif case == "no time":
        header, rows = header[1:], rows[:, 1:]
        pattern = r"field 't': no time column; pass the sampling rate \(--rate HZ\)"
    elif case == "n_dof":
        opts = {"n_dof": 3}
        pattern = r"field 'q': missing column 'q2'"
    else:
        rows = [[f"{x:.6g}" for x in r] for r in rows]
        rows[7] = rows[7][:3]
        pattern = r"line 9: 3 cells, expected 5"
    write_csv(path, header, rows)
    with pytest.raises(DataError, match=pattern):
        load_log(str(path), **opts)


def test_cli_import_reports_filter_and_info(known, tmp_path, capsys):
    src, out = tmp_path / "robot.csv", tmp_path / "robot.h5"
    write_csv(src, ["t", "q0", "q1", "tau0", "tau1"], _rows(known, 500))
    assert main(["data", "import", str(src), "-o", str(out), "--window", "31", "--polyorder", "4"]) == 0
    text = capsys.readouterr().out
    assert "Savitzky-Golay filter: window 31 samples (124 ms at 250 Hz), polynomial order 4" in text
    ds = load_dataset(out)
    assert ds.n_samples == 500 and ds["robot"].meta["derivatives"]["window"] == 31
    assert main(["data", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "trajectories: 1 (robot)" in info and "samples: 500" in info and "ground truth: none" in info


def test_cli_import_failure_leaves_nothing(known, tmp_path, capsys):
    src, out = tmp_path / "bad.csv", tmp_path / "bad.h5"
    write_csv(src, ["t", "q0", "q1", "tau0"], _rows(known)[:, :4])
    assert main(["data", "import", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing column 'tau1'" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["bad.csv"]
    assert main(["data", "import", str(tmp_path / "nope.csv"), "-o", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
