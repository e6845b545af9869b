"""`delan control`: tracking and swing-up against the true system from the command line."""

import json
import os

import pytest

from delan.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory, character_data, train_tiny):
    d = tmp_path_factory.mktemp("control")
    data = character_data(4)
    runs = {kind: train_tiny(data, d / kind, kind, "a", 3) for kind in ("structured", "mlp")}
    return data, runs


def test_track_a_recorded_trajectory(trained, tmp_path, capsys):
    data, runs = trained
    js, plots = str(tmp_path / "r.json"), str(tmp_path / "plots")
    assert (
        main(
            [
                "control",
                runs["structured"],
                "--system",
                "two-link",
                "--trajectory",
                f"{data}:a",
                "--rate",
                "250",
                "--noise",
                "0.001,0.01",
                "--json",
                js,
                "--plots",
                plots,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "tracking error RMS per joint" in out and "effort" in out
    r = json.load(open(js))
    assert r["task"] == "track" and r["controller"] == "feedforward" and r["model"] == "structured"
    assert r["trajectory"] == f"{data}:a" and r["noise"] == [0.001, 0.01] and r["rate"] == 250
    assert r["duration"] == pytest.approx(1.0, abs=0.01)  # the recording's length
    assert len(r["rms_error"]) == 2 and len(r["max_error"]) == 2 and r["effort"] > 0
    assert all(m >= e for m, e in zip(r["max_error"], r["rms_error"]))
    assert os.path.exists(os.path.join(plots, "tracking.png")) and r["figures"] == [os.path.join(plots, "tracking.png")]


def test_track_generated_true_model_beats_pd(tmp_path):
    errors = {}
    for controller in ("pd", "feedforward", "computed-torque"):
        js = str(tmp_path / f"{controller}.json")
        assert (
            main(
                [
                    "control",
                    "true",
                    "--system",
                    "two-link",
                    "--controller",
                    controller,
                    "--duration",
                    "1",
                    "--rate",
                    "250",
                    "--json",
                    js,
                ]
            )
            == 0
        )
        errors[controller] = json.load(open(js))["rms_error_norm"]
    assert errors["pd"] > 20 * errors["feedforward"]
    assert errors["pd"] > 20 * errors["computed-torque"]


def test_mlp_drives_feedforward(trained, tmp_path):
    data, runs = trained
    js = str(tmp_path / "m.json")
    assert (
        main(["control", runs["mlp"], "--system", "two-link", "--duration", "0.2", "--rate", "100", "--json", js]) == 0
    )
    assert json.load(open(js))["model"] == "mlp"


def test_swing_up(tmp_path, capsys):
    js, plots = str(tmp_path / "s.json"), str(tmp_path / "p")
    assert (
        main(
            [
                "control",
                "true",
                "--system",
                "cartpole",
                "--task",
                "swing-up",
                "--rate",
                "200",
                "--duration",
                "1",
                "--noise",
                "0.01",
                "--json",
                js,
                "--plots",
                plots,
            ]
        )
        == 0
    )
    r = json.load(open(js))
    # one second is too short to get up and stay: an honest failure, still a result
    assert r["task"] == "swing-up" and r["success"] is False and r["time"] is None
    assert r["torque_limit"] == 10.0 and r["tolerance"] == 0.1 and r["hold"] == 2.0
    assert "swing-up failed" in capsys.readouterr().out
    assert os.path.exists(os.path.join(plots, "swing_up.png"))


def test_bad_input(trained, tmp_path, cli_fails):
    data, runs = trained
    s = runs["structured"]
    cli_fails(["control", str(tmp_path / "none"), "--system", "two-link"], "no such run")
    cli_fails(["control", s, "--system", "warp-drive"], "unknown system")
    cli_fails(["control", s, "--system", "pendulum"], "n_dof")
    cli_fails(["control", s, "--system", "two-link", "--trajectory", f"{data}:zz"], "zz")
    cli_fails(["control", s, "--system", "two-link", "--trajectory", str(tmp_path / "x.h5") + ":a"], "no such file")
    cli_fails(["control", s, "--system", "two-link", "--trajectory", "nocolon"], "FILE:NAME")
    cli_fails(["control", s, "--system", "two-link", "--trajectory", f"{data}:a", "--duration", "9"], "longer")
    cli_fails(["control", s, "--system", "two-link", "--rate", "-5"], "--rate")
    cli_fails(["control", s, "--system", "two-link", "--noise", "abc"], "--noise")
    cli_fails(["control", s, "--system", "two-link", "--noise", "-1"], "--noise")
    cli_fails(["control", s, "--system", "two-link", "--torque-limit", "1,2,3"], "--torque-limit")
    cli_fails(["control", s, "--system", "two-link", "--task", "swing-up"], "swing-up")
    cli_fails(["control", "true", "--system", "cartpole", "--task", "swing-up", "--controller", "pd"], "--controller")
    cli_fails(["control", runs["mlp"], "--system", "two-link", "--controller", "computed-torque"], "mlp")
    cli_fails(["control", runs["mlp"], "--system", "cartpole", "--task", "swing-up"], "mlp")
