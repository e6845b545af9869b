"""`delan simulate`: rollouts against a recording and against the true system."""

import json
import os

import numpy as np
import pytest

from delan.cli import main
from delan.evaluation import valid_prediction_time


@pytest.fixture(scope="module")
def trained(tmp_path_factory, character_data, train_tiny):
    d = tmp_path_factory.mktemp("sim")
    data = character_data(4)
    runs = {kind: train_tiny(data, d / kind, kind, "a", 3, dtype="float64") for kind in ("structured", "mlp")}
    return data, runs


def test_valid_prediction_time():
    t = np.linspace(0, 1, 11)
    assert valid_prediction_time(t, np.zeros(11), 0.1) == 1.0
    err = np.r_[np.zeros(5), np.ones(6)]
    assert valid_prediction_time(t, err, 0.1) == pytest.approx(0.4)


def test_simulate_recording(trained, tmp_path, capsys):
    data, runs = trained
    js, plots = str(tmp_path / "r.json"), str(tmp_path / "plots")
    assert (
        main(
            [
                "simulate",
                runs["structured"],
                "--data",
                data,
                "--trajectory",
                "a",
                "--integrator",
                "rk4",
                "--steps",
                "20",
                "--json",
                js,
                "--plots",
                plots,
            ]
        )
        == 0
    )
    r = json.load(open(js))
    assert r["steps"] == 20 and 0 <= r["valid_time"] <= 20 * 0.02 + 1e-9
    assert os.path.exists(os.path.join(plots, "rollout.png"))
    assert "valid-prediction time" in capsys.readouterr().out


def test_simulate_true_system(trained, tmp_path):
    _, runs = trained
    js = str(tmp_path / "s.json")
    assert (
        main(
            [
                "simulate",
                runs["structured"],
                "--system",
                "two-link",
                "--steps",
                "10",
                "--integrator",
                "symplectic",
                "--json",
                js,
            ]
        )
        == 0
    )
    r = json.load(open(js))
    assert "energy_ref_drift" in r and r["steps"] == 10


def test_bad_input(trained, tmp_path, cli_fails):
    data, runs = trained
    cli_fails(["simulate", runs["mlp"], "--data", data, "--trajectory", "a"], "mlp")
    cli_fails(["simulate", runs["structured"], "--data", data, "--trajectory", "zz"], "zz")
    cli_fails(["simulate", runs["structured"], "--data", data], "--trajectory")
    cli_fails(["simulate", runs["structured"], "--system", "pendulum"], "n_dof")
    cli_fails(["simulate", runs["structured"], "--system", "warp-drive"], "unknown system")
    cli_fails(["simulate", runs["structured"], "--data", data, "--trajectory", "a", "--dt", "-1"], "--dt")
    cli_fails(
        ["simulate", runs["structured"], "--data", data, "--trajectory", "a", "--steps", "100000"], "past the end"
    )
    cli_fails(["simulate", str(tmp_path / "none"), "--system", "two-link"], "no such run")
