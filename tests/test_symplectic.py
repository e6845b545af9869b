"""The symplectic integrator (implicit midpoint in (q, p)): energy stays bounded, O(dt^2), under
zero torque, where rk4's drifts secularly; on a true system and on a learned model."""

import numpy as np
import pytest
import torch

from delan.integrators import rollout
from delan.systems import make_system

D = torch.float64


def energy_error(dynamics, ro):
    """|E(t) - E(0)| along a rollout, (T,) numpy."""
    with torch.no_grad():
        T, V = dynamics.energy(ro.q, ro.qd)
    E = (T + V).numpy()
    return np.abs(E - E[0])


def quarters(err):
    """max of the error over the first and over the last quarter of the rollout."""
    n = len(err) // 4
    return err[1 : n + 1].max(), err[-n:].max()


def test_true_pendulum_energy_bounded_second_order_rk4_drifts():
    s = make_system("pendulum")
    q0, qd0 = torch.tensor([2.0], dtype=D), torch.tensor([0.0], dtype=D)
    horizon = 12.0  # about 5 periods
    sym = {dt: energy_error(s, rollout(s, q0, qd0, None, dt, round(horizon / dt), "symplectic")) for dt in (0.2, 0.1)}
    rk4 = energy_error(s, rollout(s, q0, qd0, None, 0.2, round(horizon / 0.2), "rk4"))
    for err in sym.values():  # bounded: no growth from the first quarter of the run to the last
        first, last = quarters(err)
        assert last < 1.3 * first
    ratio = sym[0.2].max() / sym[0.1].max()
    assert 3.0 < ratio < 5.0  # O(dt^2)
    first, last = quarters(rk4)
    assert last > 2.5 * first  # secular drift (linear in time)


def test_learned_model_conserves_its_own_energy():
    from delan.models import DeepLagrangianNetwork

    torch.manual_seed(3)
    model = DeepLagrangianNetwork(2, width=16, depth=2, dtype=D).eval()
    q0, qd0 = torch.tensor([0.3, -0.2], dtype=D), torch.tensor([0.4, -0.3], dtype=D)
    with torch.no_grad():
        ro = {dt: rollout(model, q0, qd0, None, dt, round(1.6 / dt), "symplectic") for dt in (0.04, 0.02)}
        T0, _ = model.energy(q0, qd0)
    err = {dt: energy_error(model, r) for dt, r in ro.items()}
    assert err[0.04].max() < 1e-2 * float(T0)
    assert 2.5 < err[0.04].max() / err[0.02].max() < 6.0  # O(dt^2)
    # and it is a real integrator of the model: close to a fine rk4 solution of the same dynamics
    with torch.no_grad():
        ref = rollout(model, q0, qd0, None, 0.005, 320, "rk4")
    assert (ro[0.02].q[-1] - ref.q[-1]).abs().max() < 1e-2


def test_symplectic_convergence_and_refusals():
    s = make_system("two-link")
    q0, qd0 = torch.tensor([0.5, 0.2], dtype=D), torch.tensor([0.0, 0.0], dtype=D)
    tau = torch.tensor([0.3, -0.2], dtype=D)
    ref = rollout(s, q0, qd0, lambda t, a, b: tau, 0.005, 200, "rk4").q[-1]
    e1 = (rollout(s, q0, qd0, lambda t, a, b: tau, 0.05, 20, "symplectic").q[-1] - ref).abs().max()
    e2 = (rollout(s, q0, qd0, lambda t, a, b: tau, 0.025, 40, "symplectic").q[-1] - ref).abs().max()
    assert 3.0 < float(e1 / e2) < 5.0  # second order, with a torque
    with pytest.raises(RuntimeError, match="did not converge"):
        rollout(s, q0, torch.tensor([30.0, -30.0], dtype=D), None, 1.0, 1, "symplectic")


def test_simulate_cli_method_symplectic_reports_energy_drift(tmp_path, capsys):
    import json

    from delan.cli import main
    from delan.data import save_dataset
    from delan.data.generate import generate_dataset

    data, run, out = str(tmp_path / "d.h5"), str(tmp_path / "run"), str(tmp_path / "sim.json")
    save_dataset(generate_dataset("two-link", kind="characters", n_trajectories=2, duration=1.0, rate=25.0), data)
    assert main(["train", data, "-o", run, "--epochs", "1", "--width", "8", "--depth", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert (
        main(["simulate", run, "--system", "two-link", "--method", "symplectic", "--steps", "20", "--json", out]) == 0
    )
    printed = capsys.readouterr().out
    res = json.load(open(out))
    assert res["method"] == "symplectic" and res["steps_done"] == 20
    assert f"energy drift of the model {res['energy_drift']:.3e} J" in printed and "symplectic" in printed
