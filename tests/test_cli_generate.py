"""`delan generate`: files, summary, errors without tracebacks or half-written output."""

import os

import pytest

from delan.cli import main
from delan.data import load_dataset


def test_generate_characters(tmp_path, capsys):
    out = tmp_path / "chars.h5"
    assert (
        main(
            [
                "generate",
                "two-link",
                "-o",
                str(out),
                "--kind",
                "characters",
                "--rate",
                "100",
                "--trajectories",
                "4",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "4 characters trajectories x 2 s at 100 Hz = 804 samples" in text
    ds = load_dataset(out)
    assert ds.names == ["a", "b", "c", "d"] and ds.system == "two-link"
    assert ds.truth_fields == ["H", "tau_inertial", "tau_coriolis", "tau_gravity", "tau_friction"]
    assert ds.attrs["generator"]["kind"] == "characters"


def test_generate_simulated_n_link_with_noise_and_friction(tmp_path, capsys):
    out = tmp_path / "sim.h5"
    assert (
        main(
            [
                "generate",
                "n-link",
                "--n-dof",
                "3",
                "-o",
                str(out),
                "--trajectories",
                "2",
                "--duration",
                "0.5",
                "--rate",
                "100",
                "--simulate",
                "--friction",
                "--noise",
                "0.01",
            ]
        )
        == 0
    )
    assert "simulated tracking run" in capsys.readouterr().out
    ds = load_dataset(out)
    assert ds.n_dof == 3 and len(ds) == 2 and ds.attrs["generator"]["simulate"] is True
    assert abs(ds[ds.names[0]].truth["tau_friction"]).max() > 0


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["generate", "robot9000"],
            "unknown system 'robot9000'; valid systems: pendulum, two-link, cartpole, furuta, n-link, panda",
        ),
        (["generate", "cartpole", "--kind", "characters"], "character trajectories need the two-link arm"),
        (["generate", "two-link", "--rate", "-5"], "rate must be a positive number"),
        (["generate", "two-link", "--n-dof", "4"], "has 2 degrees of freedom, not 4"),
        (["generate", "two-link", "--trajectories", "0"], "at least one trajectory"),
    ],
)
def test_generate_errors(argv, message, tmp_path, capsys):
    out = tmp_path / "never.h5"
    assert main(argv + ["-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_generate_into_missing_folder(tmp_path, capsys):
    assert main(["generate", "pendulum", "-o", str(tmp_path / "no" / "such" / "x.h5"), "--trajectories", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
