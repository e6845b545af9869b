"""`delan evaluate`: table + one JSON object with DESIGN.md's keys; bad input handled."""

import json
import os

import pytest

from delan.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory, character_data, train_tiny):
    d = tmp_path_factory.mktemp("eval")
    data = character_data(5)
    runs = {kind: train_tiny(data, d / kind, kind, "a,b", 2) for kind in ("structured", "mlp")}
    return data, runs


def test_evaluate_structured(trained, tmp_path, capsys):
    data, runs = trained
    js, plots = str(tmp_path / "m.json"), str(tmp_path / "plots")
    assert main(["evaluate", runs["structured"], data, "--json", js, "--plots", plots]) == 0
    out = capsys.readouterr().out
    assert "torque_mse" in out and "gravity_mse" in out
    m = json.load(open(js))
    for k in ("torque_mse", "inertial_mse", "coriolis_mse", "gravity_mse", "power_mse", "forward_mse", "n_samples"):
        assert k in m, k
    assert m["test"] == ["a", "b"] and m["n_samples"] == 2 * 51
    assert os.path.exists(os.path.join(plots, "decomposition.png"))
    assert os.path.exists(os.path.join(plots, "training.png"))


def test_evaluate_mlp_says_what_it_cannot_do(trained, tmp_path, capsys):
    data, runs = trained
    js = str(tmp_path / "mlp.json")
    assert main(["evaluate", runs["mlp"], data, "--test", "c", "--json", js]) == 0
    m = json.load(open(js))
    assert "torque_mse" in m and "gravity_mse" not in m and "forward_mse" not in m
    assert "mlp" in m["unavailable"]["gravity_mse"]
    assert "n/a" in capsys.readouterr().out


def test_bad_input(trained, tmp_path, cli_fails):
    data, runs = trained
    cli_fails(["evaluate", str(tmp_path / "nope"), data], "no such run directory")
    cli_fails(["evaluate", runs["structured"], str(tmp_path / "none.h5")], "no such file")
    cli_fails(["evaluate", runs["structured"], data, "--test", "zz"], "unknown trajectory")
    # a corrupt model file
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("config.json",):
        (broken / f).write_bytes(open(os.path.join(runs["structured"], f), "rb").read())
    (broken / "model.pt").write_bytes(b"garbage")
    cli_fails(["evaluate", str(broken), data], "model.pt")
    # a data file of another n_dof
    from delan.data import save_dataset
    from delan.data.generate import generate_dataset

    other = str(tmp_path / "pend.h5")
    save_dataset(generate_dataset("pendulum", n_trajectories=1, duration=0.2, rate=50.0), other)
    cli_fails(["evaluate", runs["structured"], other], "n_dof")
    js = tmp_path / "keep.json"
    js.write_text("{}")
    cli_fails(["evaluate", runs["structured"], data, "--test", "zz", "--json", str(js)], "unknown")
    assert js.read_text() == "{}"


def test_model_without_forward_dynamics_still_gets_its_other_metrics():
    """A black-box Lagrangian whose d2L/dqd2 is indefinite has no forward model: forward_mse is
    reported unavailable with the reason, the torque decomposition is still scored."""
    import torch

    from delan.data.generate import generate_dataset
    from delan.evaluation import evaluate_model
    from delan.models import BlackBoxLagrangianNetwork

    ds = generate_dataset("two-link", kind="characters", n_trajectories=2, duration=0.5, rate=50.0)
    model = BlackBoxLagrangianNetwork(2, width=8, dtype=torch.float64)

    def indefinite(H, rhs):
        raise ValueError("not positive definite")

    model.solve_mass_matrix = indefinite
    result = evaluate_model(model, ds)
    assert "forward_mse" not in result["metrics"]
    assert "positive definite" in result["unavailable"]["forward_mse"]
    for key in ("torque_mse", "inertial_mse", "coriolis_mse", "gravity_mse", "power_mse"):
        assert key in result["metrics"]
