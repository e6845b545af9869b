"""The HDF5 data format: round trip, validation errors, atomic writes, derivative estimation."""

import os

import h5py
import numpy as np
import pytest

from delan.cli import main
from delan.data import Dataset, Trajectory, load_dataset, save_dataset
from delan.data.derivatives import estimate_derivatives
from delan.data.generate import generate_dataset
from delan.errors import DataError
from delan.systems import make_system
from delan.trajectories import fourier_trajectories


@pytest.fixture(scope="module")
def small():
    return generate_dataset("two-link", "characters", 3, duration=1.0, rate=100, friction=True)


def test_round_trip_identical(small, tmp_path):
    path = tmp_path / "d.h5"
    save_dataset(small, path)
    back = load_dataset(path)
    assert back.names == small.names == ["a", "b", "c"]
    assert (back.n_dof, back.joint_names, back.system) == (2, ["shoulder", "elbow"], "two-link")
    assert back.attrs == small.attrs
    for a, b in zip(small, back):
        assert a.fields().keys() == b.fields().keys()
        for k, v in a.fields().items():
            assert np.array_equal(v, b.fields()[k]) and b.fields()[k].dtype == np.float64, k
        assert set(b.truth) == {"H", "tau_inertial", "tau_coriolis", "tau_gravity", "tau_friction"}
    # written again, the file is byte-for-byte the same
    save_dataset(back, tmp_path / "e.h5")
    assert (tmp_path / "d.h5").read_bytes() == (tmp_path / "e.h5").read_bytes()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_seed_reproduces_file_bit_for_bit(tmp_path):
    for name in ("x", "y"):
        ds = generate_dataset("furuta", "splines", 2, duration=1.0, rate=100, noise=0.01, seed=5)
        save_dataset(ds, tmp_path / f"{name}.h5")
    assert (tmp_path / "x.h5").read_bytes() == (tmp_path / "y.h5").read_bytes()
    other = generate_dataset("furuta", "splines", 2, duration=1.0, rate=100, noise=0.01, seed=6)
    assert not np.array_equal(other[other.names[0]].q, load_dataset(tmp_path / "x.h5")[other.names[0]].q)


def test_ground_truth_consistent(small):
    c = small.concatenate()
    np.testing.assert_allclose(
        c["tau"], c["tau_inertial"] + c["tau_coriolis"] + c["tau_gravity"] + c["tau_friction"], atol=1e-12
    )
    np.testing.assert_allclose(c["tau_inertial"], np.einsum("nij,nj->ni", c["H"], c["qdd"]), atol=1e-12)
    assert c["q"].shape == (small.n_samples, 2) and c["H"].shape == (small.n_samples, 2, 2)
    assert np.array_equal(np.unique(c["trajectory"]), [0, 1, 2])


def test_split(small):
    train, test = small.split(["b"])
    assert train.names == ["b"] and test.names == ["a", "c"]
    with pytest.raises(DataError, match=r"unknown trajectory names \['zz'\]; valid names: a, b, c"):
        small.split(["zz"])
    with pytest.raises(DataError, match="valid names"):
        small["zz"]


def test_missing_derivatives_estimated_on_load(tmp_path):
    s = make_system("two-link")
    ref = fourier_trajectories(s, 1, 4.0, np.random.default_rng(0))[0]
    t = np.arange(0, 4.0, 1 / 250)
    q, qd, qdd = ref(t)
    path = tmp_path / "noqd.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(format="delan-trajectories", version=1, n_dof=2)
        g = f.create_group("trajectories/run1")
        g["t"], g["q"], g["tau"] = t, q, np.zeros_like(q)
    tr = load_dataset(path)["run1"]
    assert tr.meta["derivatives"]["method"] == "savitzky-golay"
    np.testing.assert_allclose(tr.qd, qd, atol=5e-3 * np.abs(qd).max())  # ends are the least accurate


def write_raw(path, trajs, n_dof=2, **attrs):
    with h5py.File(path, "w") as f:
        f.attrs.update(format="delan-trajectories", version=1, n_dof=n_dof, **attrs)
        for name, fields in trajs.items():
            g = f.create_group(f"trajectories/{name}")
            for k, v in fields.items():
                g[k] = v


def good(T=20, n=2):
    t = np.arange(T) * 0.01
    z = np.zeros((T, n))
    return {"t": t, "q": z + 0.1, "qd": z, "qdd": z, "tau": z}


def bad(**changes):
    f = good()
    for k, v in changes.items():
        if v is None:
            del f[k]
        else:
            f[k] = v
    return f


NAN_Q = good()["q"].copy()
NAN_Q[5, 1] = np.nan
INF_TAU = good()["tau"].copy()
INF_TAU[3, 0] = np.inf
BACK_T = good()["t"].copy()
BACK_T[7] = BACK_T[6]

CASES = {
    "nan": ({"run": bad(q=NAN_Q)}, r"trajectory 'run': field 'q': 1 non-finite values \(first: NaN at sample 5\)"),
    "inf": ({"run": bad(tau=INF_TAU)}, r"trajectory 'run': field 'tau': 1 non-finite values \(first: inf"),
    "shape": (
        {"run": bad(qd=np.zeros((20, 3)))},
        r"trajectory 'run': field 'qd': expected shape \(T, n_dof\) = \(20, 2\), got \(20, 3\)",
    ),
    "H shape": ({"run": bad(H=np.zeros((20, 2)))}, r"field 'H': expected shape \(T, n_dof, n_dof\) = \(20, 2, 2\)"),
    "time": ({"run": bad(t=BACK_T)}, r"trajectory 'run': field 't': time must be strictly increasing"),
    "missing": ({"run": bad(tau=None)}, r"trajectory 'run': field 'tau': required field is missing"),
    "n_dof": (
        {"a": good(), "b": good(n=3)},
        r"trajectory 'b': field 'q': expected shape \(T, n_dof\) = \(20, 2\), got \(20, 3\)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_one_clear_error(case, tmp_path, capsys):
    path = tmp_path / "bad.h5"
    trajs, pattern = CASES[case]
    write_raw(path, trajs)
    with pytest.raises(DataError, match=pattern) as err:
        load_dataset(path)
    assert str(path) in str(err.value)
    # the CLI: exit 2, one line on stderr naming the file, no traceback
    assert main(["data", "info", str(path)]) == 2
    out = capsys.readouterr()
    assert out.err.count("\n") == 1 and str(path) in out.err and "Traceback" not in out.err
    assert out.err.startswith("delan data: error: ")


def test_in_memory_validation_names_field():
    f = good()
    with pytest.raises(DataError, match="<memory>: trajectory 'x': field 'qdd'"):
        Trajectory("x", f["t"], f["q"], f["qd"], np.zeros((20, 1)), f["tau"]).validate()
    t1 = Trajectory("a", **{k: v for k, v in good().items()})
    t2 = Trajectory("b", **{k: v for k, v in good(n=3).items()})
    with pytest.raises(DataError, match="trajectory 'b': field 'q': has 3 degrees of freedom, expected n_dof = 2"):
        Dataset([t1, t2])


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not ours"])
def test_corrupt_or_foreign_file(damage, small, tmp_path, capsys):
    path = tmp_path / "x.h5"
    save_dataset(small, path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x89HDF\r\n" + os.urandom(1000))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with h5py.File(path, "w") as f:
            f["x"] = np.zeros(3)
    with pytest.raises(DataError, match=str(path)):
        load_dataset(path)
    assert main(["data", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_failed_write_leaves_nothing(small, tmp_path, monkeypatch):
    path = tmp_path / "out.h5"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", boom)
    with pytest.raises(OSError):
        save_dataset(small, path)
    assert os.listdir(tmp_path) == []


def test_derivative_estimation_accuracy():
    """At 250 Hz with 1e-4 rad position noise the estimated qdd is within 1% RMSE of its peak."""
    s = make_system("two-link")
    rng = np.random.default_rng(0)
    for ref in fourier_trajectories(s, 3, 5.0, rng):
        t = np.arange(0, 5.0, 1 / 250)
        q, qd, qdd = ref(t)
        e_qd, e_qdd, info = estimate_derivatives(t, q + rng.normal(scale=1e-4, size=q.shape))
        assert info["window"] == 25 and info["polyorder"] == 3
        assert np.sqrt(np.mean((e_qdd - qdd) ** 2)) < 0.01 * np.abs(qdd).max()
        assert np.sqrt(np.mean((e_qd - qd) ** 2)) < 0.002 * np.abs(qd).max()


def test_derivative_estimation_uneven_sampling_and_bad_time():
    """A dropped sample makes the clock non-uniform: the local polynomial fit on the actual time
    stamps is exact for a cubic; time that does not increase is refused naming the index."""
    t = np.cumsum(np.r_[0, np.full(50, 0.01), 0.02, np.full(50, 0.01)])
    q = np.stack([t**3 - t, 2 * t**2], -1)
    qd, qdd, info = estimate_derivatives(t, q, window=11)
    assert info["method"] == "local-polynomial" and not info["clock"]["uniform"]
    assert info["clock"]["jittered_steps"] == 1 and info["clock"]["step_max"] == pytest.approx(0.02)
    np.testing.assert_allclose(qd, np.stack([3 * t**2 - 1, 4 * t], -1), atol=1e-9)
    np.testing.assert_allclose(qdd, np.stack([6 * t, np.full_like(t, 4.0)], -1), atol=1e-7)
    back = t.copy()
    back[30] = back[29]
    with pytest.raises(
        DataError,
        match=r"run.h5: trajectory 'a': field 't': time must be strictly increasing "
        r"\(t\[30\] = .* <= t\[29\]",
    ):
        estimate_derivatives(back, q, source="run.h5: trajectory 'a'")
    with pytest.raises(DataError, match="odd"):
        estimate_derivatives(np.arange(50) * 0.01, np.zeros((50, 2)), window=10)


def test_written_file_has_normal_permissions(small, tmp_path):
    """mkstemp's 0600 is not left on the result: under umask 022 a data file is 0644."""
    old = os.umask(0o022)
    try:
        save_dataset(small, tmp_path / "p.h5")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "p.h5").st_mode & 0o777) == 0o644
