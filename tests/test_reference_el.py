"""The reference Euler–Lagrange machinery gives the true torques of systems with known energies."""

import math

import pytest
import torch

from delan import reference as ref

F64 = torch.float64
M1, M2, L1, LC1, LC2, G = 2.0, 1.0, 0.5, 0.25, 0.25, 9.81
I1, I2 = M1 * 0.5**2 / 12, M2 * 0.5**2 / 12


def arm_H(q):
    """Closed-form mass matrix of a planar two-link arm (angles from the downward vertical)."""
    c2 = torch.cos(q[:, 1])
    h11 = I1 + I2 + M1 * LC1**2 + M2 * (L1**2 + LC2**2 + 2 * L1 * LC2 * c2)
    h12 = I2 + M2 * (LC2**2 + L1 * LC2 * c2)
    h22 = torch.full_like(c2, I2 + M2 * LC2**2)
    return torch.stack([torch.stack([h11, h12], -1), torch.stack([h12, h22], -1)], -2)


def arm_V(q):
    return -G * ((M1 * LC1 + M2 * L1) * torch.cos(q[:, 0]) + M2 * LC2 * torch.cos(q[:, 0] + q[:, 1]))


def arm_energy(q, qd):
    T = 0.5 * (qd * (arm_H(q) @ qd.unsqueeze(-1)).squeeze(-1)).sum(-1)
    return T, arm_V(q)


def arm_tau(q, qd, qdd):
    """The textbook closed form: H qdd + c + g."""
    H = arm_H(q)
    h = M2 * L1 * LC2 * torch.sin(q[:, 1])
    c = torch.stack([-h * (2 * qd[:, 0] * qd[:, 1] + qd[:, 1] ** 2), h * qd[:, 0] ** 2], -1)
    s1, s12 = torch.sin(q[:, 0]), torch.sin(q[:, 0] + q[:, 1])
    g = G * torch.stack([(M1 * LC1 + M2 * L1) * s1 + M2 * LC2 * s12, M2 * LC2 * s12], -1)
    return (H @ qdd.unsqueeze(-1)).squeeze(-1) + c + g, c, g


def states(n=2, B=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = (2 * torch.rand(B, n, dtype=F64, generator=gen) - 1) * math.pi
    return q, 3 * torch.randn(B, n, dtype=F64, generator=gen), 5 * torch.randn(B, n, dtype=F64, generator=gen)


def close(a, b, tol=1e-12):
    return float((a - b).abs().max().detach()) <= tol * float(b.abs().max().detach())


def test_two_link_from_energies():
    q, qd, qdd = states()
    tau, c, g = arm_tau(q, qd, qdd)
    assert close(ref.euler_lagrange_from_energy(arm_energy, q, qd, qdd), tau)
    assert close(ref.euler_lagrange(lambda x: (arm_H(x), arm_V(x)), q, qd, qdd), tau)
    t = ref.reference_terms(lambda x: (arm_H(x), arm_V(x)), q, qd, qdd)
    assert close(t.coriolis, c) and close(t.gravity, g) and close(t.tau, tau)
    # the Lagrangian route and its split (T quadratic in qd, so both splits agree)
    lt = ref.lagrangian_terms(lambda a, b: arm_energy(a, b)[0] - arm_V(a), q, qd, qdd)
    assert close(lt.H, arm_H(q)) and close(lt.coriolis, c) and close(lt.gravity, g) and close(lt.tau, tau)
    assert close(lt.V, arm_V(q)) and close(lt.T, arm_energy(q, qd)[0])
    # energy balance of the true system
    assert close(ref.energy_rate(arm_energy, q, qd, qdd), (qd * tau).sum(-1))


def test_pendulum():
    m, l = 1.3, 0.7
    q, qd, qdd = states(1)

    def energy(a, b):
        return 0.5 * m * l**2 * b[:, 0] ** 2, -m * G * l * torch.cos(a[:, 0])

    want = m * l**2 * qdd + m * G * l * torch.sin(q)
    assert close(ref.euler_lagrange_from_energy(energy, q, qd, qdd), want)


def test_matches_the_library_system():
    systems = pytest.importorskip("delan.systems")
    arm = systems.make_system("two-link")
    q, qd, qdd = states(seed=3)
    tau = arm.inverse_dynamics(q, qd, qdd)
    assert close(arm_tau(q, qd, qdd)[0], tau)
    assert close(ref.euler_lagrange_from_energy(arm.energy, q, qd, qdd), tau)


def test_gradients_flow_to_parameters():
    # the reference is differentiable w.r.t. parameters inside the energy (here a mass)
    m2 = torch.tensor(1.0, dtype=F64, requires_grad=True)
    q, qd, qdd = states(B=8)

    def energy(a, b):
        T, V = arm_energy(a, b)
        return m2 * T, m2 * V

    tau = ref.euler_lagrange_from_energy(energy, q, qd, qdd)
    (d,) = torch.autograd.grad(tau.sum(), m2)
    assert torch.allclose(d, arm_tau(q, qd, qdd)[0].sum(), rtol=1e-12)
    tau2 = ref.euler_lagrange(lambda x: (m2 * arm_H(x), m2 * arm_V(x)), q, qd, qdd, create_graph=True)
    (d2,) = torch.autograd.grad(tau2.sum(), m2)
    assert torch.allclose(d2, d, rtol=1e-12)
