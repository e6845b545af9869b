"""Integrators: energy conservation, convergence order, replay of recorded torques."""

import importlib.util

import numpy as np
import pytest
import torch

from delan.integrators import INTEGRATORS, interpolated_torque, rollout
from delan.systems import make_system
from delan.trajectories import fourier_trajectories

HAS_PIN = importlib.util.find_spec("pinocchio") is not None


def relative_energy_drift(system, ro):
    """max |E(t) - E(0)| over the largest kinetic energy reached (the energy being exchanged)."""
    q, qd = ro.q.reshape(-1, system.n_dof), ro.qd.reshape(-1, system.n_dof)
    T, V = system.energy(q, qd)
    shape = ro.q.shape[:-1]
    E, T = (T + V).reshape(shape), T.reshape(shape)
    return ((E - E[0]).abs().max(0).values / T.max(0).values).max().item()


def test_energy_conserved_two_link_rk4_10s():
    s = make_system("two-link")
    q0 = torch.tensor([[1.0, -0.5], [2.5, 1.0]], dtype=torch.float64)  # a batch of two (chaotic) runs
    qd0 = torch.tensor([[0.5, 1.0], [0.0, -2.0]], dtype=torch.float64)
    ro = rollout(s, q0, qd0, None, dt=1e-3, steps=10_000, method="rk4")
    assert ro.q.shape == (10_001, 2, 2) and ro.t[-1].item() == pytest.approx(10.0)
    assert relative_energy_drift(s, ro) < 1e-6


@pytest.mark.skipif(not HAS_PIN, reason="pinocchio (pip install pin) not installed")
def test_energy_conserved_panda_rk4_10s():
    s = make_system("panda")
    q0 = torch.tensor([0.0, -0.3, 0.0, -2.0, 0.0, 1.8, 0.8], dtype=torch.float64)
    qd0 = torch.full((7,), 0.3, dtype=torch.float64)
    ro = rollout(s, q0, qd0, None, dt=1e-3, steps=10_000, method="rk4")
    assert ro.q.shape == (10_001, 7)
    assert relative_energy_drift(s, ro) < 1e-6


def test_convergence_orders():
    s = make_system("pendulum")
    q0, qd0 = torch.tensor([2.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)
    ref = rollout(s, q0, qd0, None, dt=2.5e-4, steps=4000, method="rk4").q[-1]
    err = {}
    for m in ("euler", "symplectic", "rk4"):
        err[m] = [
            abs(rollout(s, q0, qd0, None, dt=dt, steps=round(1.0 / dt), method=m).q[-1] - ref).item()
            for dt in (0.01, 0.005)
        ]
    assert 1.6 < err["euler"][0] / err["euler"][1] < 2.5  # first order
    assert 3.5 < err["symplectic"][0] / err["symplectic"][1] < 4.5  # second order (implicit midpoint)
    assert 12 < err["rk4"][0] / err["rk4"][1] < 20  # fourth order
    d = rollout(s, q0, qd0, None, dt=0.01, steps=100, method="dopri5")
    assert abs(d.q[-1] - ref).item() < 1e-7 and d.q.shape == (101, 1)


def test_symplectic_energy_bounded_euler_grows():
    s = make_system("pendulum")
    q0, qd0 = torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)
    drift = {m: relative_energy_drift(s, rollout(s, q0, qd0, None, 0.05, 400, m)) for m in ("euler", "symplectic")}
    assert drift["symplectic"] < 0.05 < drift["euler"]


def test_replay_recorded_torque_follows_reference():
    s = make_system("two-link", friction=True)
    ref = fourier_trajectories(s, 1, 2.0, np.random.default_rng(0))[0]
    t = np.arange(0, 2.0 + 1e-9, 1e-3)
    q, qd, qdd = ref(t)
    tau = s.inverse_dynamics(*(torch.as_tensor(x) for x in (q, qd, qdd))).numpy()
    ro = rollout(s, torch.as_tensor(q[0]), torch.as_tensor(qd[0]), interpolated_torque(t, tau), 1e-3, 1000, "rk4")
    np.testing.assert_allclose(ro.q.numpy(), q[:1001], atol=1e-3)
    np.testing.assert_allclose(ro.qdd[0].numpy(), qdd[0], atol=1e-8)


@pytest.mark.parametrize("method", INTEGRATORS)
def test_float32_and_shapes(method):
    s = make_system("cartpole")
    q0 = torch.zeros(3, 2, dtype=torch.float32)
    q0[:, 1] = torch.tensor([0.1, 0.2, 0.3])
    ro = rollout(s, q0, torch.zeros_like(q0), lambda t, q, qd: torch.zeros_like(q), 0.01, 20, method)
    assert ro.q.dtype == torch.float32 and ro.q.shape == ro.qd.shape == ro.qdd.shape == (21, 3, 2)
    assert ro.t.shape == (21,)
    with pytest.raises(ValueError, match="unknown integrator"):
        rollout(s, q0, q0, None, 0.01, 2, "leapfrog")
