"""Joint types in the data format: parsing, the file attribute, generated truth, import, info."""

import os

import h5py
import numpy as np
import pytest

from delan.cli import main
from delan.data import Dataset, Trajectory, load_dataset, parse_joint_types, save_dataset
from delan.data.generate import generate_dataset
from delan.errors import DataError
from delan.systems import SYSTEMS, make_system


@pytest.mark.parametrize(
    "spec,n,expected",
    [
        ("revolute", 2, ["revolute", "revolute"]),
        ("Prismatic", 3, ["prismatic"] * 3),
        ("R,P,R", 3, ["revolute", "prismatic", "revolute"]),
        ("revolute, prismatic", 2, ["revolute", "prismatic"]),
        ("r,p", 2, ["revolute", "prismatic"]),
        ("R", 1, ["revolute"]),
        (["P", "revolute"], 2, ["prismatic", "revolute"]),
    ],
)
def test_parse_joint_types(spec, n, expected):
    assert parse_joint_types(spec, n) == expected


@pytest.mark.parametrize(
    "spec,pattern",
    [
        ("R,X", r"--joint-types 'R,X': joint 1: 'X' is not a joint type; expected revolute or prismatic \(R/P\)"),
        ("R,R,R", r"--joint-types 'R,R,R': 3 joint types for n_dof = 2; expected revolute or prismatic"),
        ("", r"joint 0: '' is not a joint type"),
        ("spherical", r"'spherical' is not a joint type"),
    ],
)
def test_parse_joint_types_errors(spec, pattern):
    with pytest.raises(DataError, match=pattern) as err:
        parse_joint_types(spec, 2, source="--joint-types")
    assert "\n" not in str(err.value)


def _dataset(joint_types=None, n=2, T=20):
    t = np.arange(T) * 0.01
    z = np.zeros((T, n))
    return Dataset([Trajectory("run", t, z + 0.1, z, z, z)], joint_types=joint_types)


def test_dataset_joint_types_round_trip_and_mask(tmp_path):
    ds = _dataset(["revolute", "prismatic"])
    assert ds.revolute_mask() == [True, False]
    assert _dataset().joint_types is None and _dataset().revolute_mask() is None
    save_dataset(ds, tmp_path / "d.h5")
    with h5py.File(tmp_path / "d.h5") as f:
        assert [x.decode() if isinstance(x, bytes) else x for x in f.attrs["joint_types"]] == ["revolute", "prismatic"]
    back = load_dataset(tmp_path / "d.h5")
    assert back.joint_types == ["revolute", "prismatic"] and "joint_types" not in back.attrs
    a, b = back.split(["run"])
    assert a.joint_types == ["revolute", "prismatic"]
    save_dataset(_dataset(), tmp_path / "none.h5")
    assert load_dataset(tmp_path / "none.h5").joint_types is None
    with pytest.raises(DataError, match=r"<memory>: attribute 'joint_types': 1 entry for n_dof = 2"):
        _dataset(["revolute"])


@pytest.mark.parametrize(
    "value,pattern",
    [
        (
            ["revolute"],
            r"attribute 'joint_types': 1 entry for n_dof = 2; expected a list of 2 strings, "
            r"each 'revolute' or 'prismatic'",
        ),
        (["revolute", "hinge"], r"attribute 'joint_types': unknown joint type 'hinge'"),
        (["revolute", "revolute", "prismatic"], r"attribute 'joint_types': 3 entries for n_dof = 2"),
    ],
)
def test_bad_joint_types_attribute(value, pattern, tmp_path, cli_fails):
    path = tmp_path / "bad.h5"
    save_dataset(_dataset(), path)
    with h5py.File(path, "a") as f:
        f.attrs["joint_types"] = np.array(value, dtype=h5py.string_dtype())
    with pytest.raises(DataError, match=pattern) as err:
        load_dataset(path)
    assert str(err.value).startswith(f"{path}: ")
    cli_fails(["data", "info", str(path)], "attribute 'joint_types'")


@pytest.mark.parametrize(
    "name,expected",
    [
        ("pendulum", ["revolute"]),
        ("two-link", ["revolute"] * 2),
        ("cartpole", ["prismatic", "revolute"]),
        ("furuta", ["revolute"] * 2),
        ("n-link", ["revolute"] * 3),
    ],
)
def test_systems_know_their_joint_types(name, expected):
    s = make_system(name)
    assert s.joint_types == expected and s.describe()["joint_types"] == expected
    if name == "cartpole":
        assert s.joint_names == ["cart", "pole"]  # q = (x, theta): the cart slides, the pole turns


def test_every_system_has_joint_types():
    for name in SYSTEMS[:-1]:  # panda needs pinocchio; its types come from the URDF's joints
        s = make_system(name)
        assert len(s.joint_types) == s.n_dof


def test_generated_file_records_truth_and_info_prints_it(tmp_path, capsys):
    out = tmp_path / "cp.h5"
    assert (
        main(["generate", "cartpole", "-o", str(out), "--trajectories", "1", "--duration", "0.2", "--rate", "50"]) == 0
    )
    capsys.readouterr()
    assert load_dataset(out).joint_types == ["prismatic", "revolute"]
    assert load_dataset(out).revolute_mask() == [False, True]
    assert main(["data", "info", str(out)]) == 0
    assert "joint types: prismatic, revolute" in capsys.readouterr().out
    ds = generate_dataset("two-link", "fourier", 1, duration=0.2, rate=50)
    assert ds.joint_types == ["revolute", "revolute"]


def _log(tmp_path):
    path = tmp_path / "log.csv"
    t = np.arange(30) * 0.01
    rows = np.column_stack([t, np.sin(t), np.cos(t), t, t])
    with open(path, "w") as f:
        f.write("t,q0,q1,tau0,tau1\n")
        for r in rows:
            f.write(",".join(f"{x:.17g}" for x in r) + "\n")
    return path


def test_import_joint_types(tmp_path, capsys):
    src, out = _log(tmp_path), tmp_path / "log.h5"
    assert main(["data", "import", str(src), "-o", str(out), "--joint-types", "R,r"]) == 0
    assert "joint types: revolute, revolute" in capsys.readouterr().out
    assert load_dataset(out).joint_types == ["revolute", "revolute"]
    assert main(["data", "import", str(src), "-o", str(out)]) == 0
    assert "joint types: not recorded" in capsys.readouterr().out
    assert main(["data", "info", str(out)]) == 0
    assert "joint types: not recorded" in capsys.readouterr().out


def test_import_bad_joint_types_writes_nothing(tmp_path, cli_fails):
    src, out = _log(tmp_path), tmp_path / "log.h5"
    cli_fails(
        ["data", "import", str(src), "-o", str(out), "--joint-types", "R,Q"],
        f"{src}: --joint-types 'R,Q': joint 1: 'Q' is not a joint type",
    )
    cli_fails(["data", "import", str(src), "-o", str(out), "--joint-types", "R,R,P"], "3 joint types for n_dof = 2")
    assert sorted(os.listdir(tmp_path)) == ["log.csv"]
