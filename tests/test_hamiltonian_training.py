"""Hamiltonian losses (their identities with the Lagrangian ones) and `delan train --model
hamiltonian|black-box-hamiltonian` end to end."""

import json
import os

import pytest
import torch

from delan import losses
from delan.cli import main
from delan.hamiltonian_losses import hamiltonian_loss, resolve_hamiltonian_weights, velocity_variance
from delan.models import BlackBoxHamiltonianNetwork, DeepHamiltonianNetwork

F64 = torch.float64


def batch(n, B=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, n, dtype=F64, generator=g) for _ in range(4))


def model(kind, n, **kw):
    torch.manual_seed(0)
    cls = DeepHamiltonianNetwork if kind == "structured" else BlackBoxHamiltonianNetwork
    return cls(n, width=16, revolute=[True] * n, friction=True, dtype=F64, **kw)


@pytest.mark.parametrize("kind", ["structured", "black-box"])
def test_parts_are_the_lagrangian_ones_in_hamiltonian_variables(kind):
    """pdot = the inverse part, power = the power part, forward = the forward part (mass and joint
    norms), all from the torque residual of the model's inverse dynamics; the qd part vanishes."""
    n = 3
    m = model(kind, n)
    q, qd, qdd, tau = batch(n)
    scales = losses.Normaliser.from_data(q, qd, qdd, tau)
    qd_var = velocity_variance(qd)
    tau_pred = m.inverse_dynamics(q, qd, qdd)
    H = m.terms(q, qd).H
    for norm in ("mass", "joint"):
        _, hp = hamiltonian_loss(
            m, (q, qd, qdd, tau), scales, qd_var, {"pdot": 1, "qd": 1, "power": 1, "forward": 1}, forward_norm=norm
        )
        _, lp = losses.loss_from_prediction(
            tau_pred, H, (q, qd, qdd, tau), scales, {"inverse": 1, "forward": 1, "power": 1}, forward_norm=norm
        )
        assert float(hp["pdot"]) == pytest.approx(float(lp["inverse"]), rel=1e-10)
        assert float(hp["forward"]) == pytest.approx(float(lp["forward"]), rel=1e-9)
        # the Lagrangian power part ignores friction in its prediction (f cancels): the same value
        assert float(hp["power"]) == pytest.approx(float(lp["power"]), rel=1e-10)
        assert float(hp["qd"]) <= 1e-20
    assert float(hp["pdot"]) > 0.1  # a random model does not fit random data


def test_weights_and_gradient():
    w = resolve_hamiltonian_weights({"qd": 2})
    assert (w.pdot, w.qd) == (1.0, 2.0)
    with pytest.raises(ValueError, match="'inverse'.*pdot"):
        resolve_hamiltonian_weights({"inverse": 1})
    m = model("black-box", 2)
    q, qd, qdd, tau = batch(2)
    total, parts = hamiltonian_loss(
        m,
        (q, qd, qdd, tau),
        losses.Normaliser.from_data(q, qd, qdd, tau),
        velocity_variance(qd),
        {"qd": 0, "forward": 0},
    )
    assert set(parts) == {"pdot", "power"}
    total.backward()
    assert all(p.grad is not None for name, p in m.named_parameters() if name != "net.output.bias")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    from delan.data import save_dataset
    from delan.data.generate import generate_dataset

    path = str(tmp_path_factory.mktemp("data") / "chars.h5")
    save_dataset(generate_dataset("two-link", kind="characters", n_trajectories=4, duration=1.0, rate=25.0), path)
    return path


FAST = ["--width", "16", "--depth", "1", "--batch-size", "32", "--quiet"]


@pytest.mark.parametrize("kind", ["hamiltonian", "black-box-hamiltonian"])
def test_train_evaluate_simulate_from_the_cli(kind, data_file, tmp_path, capsys):
    out = str(tmp_path / kind)
    assert main(["train", data_file, "-o", out, "--model", kind, "--test", "a", "--epochs", "2"] + FAST) == 0
    log = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert {"train_pdot", "train_power", "train_forward", "val_pdot"} <= set(log[-1])
    res = str(tmp_path / f"{kind}.json")
    assert main(["evaluate", out, "--json", res, "--plots", str(tmp_path / "plots")]) == 0
    metrics = json.load(open(res))
    assert metrics["model"] == kind
    assert os.path.exists(tmp_path / "plots" / "decomposition.png")
    assert main(["simulate", out, "--data", data_file, "--trajectory", "a", "--steps", "10"]) == 0
    from delan.training import load_run

    _, loaded = load_run(out)
    assert (
        type(loaded).__name__
        == {"hamiltonian": "DeepHamiltonianNetwork", "black-box-hamiltonian": "BlackBoxHamiltonianNetwork"}[kind]
    )


def test_cli_refuses_lagrangian_part_names(data_file, tmp_path, cli_fails):
    cli_fails(
        [
            "train",
            data_file,
            "-o",
            str(tmp_path / "r"),
            "--model",
            "hamiltonian",
            "--loss-weights",
            "inverse=1",
            "--epochs",
            "1",
        ]
        + FAST,
        "known: pdot, qd, power, forward",
    )
