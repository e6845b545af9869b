"""Ground truth of the simulated systems: closed forms against autograd Euler-Lagrange and Pinocchio."""

import importlib.util
import sys

import numpy as np
import pytest
import torch

from delan.errors import DataError
from delan.systems import SYSTEMS, make_system
from delan.systems.n_link import NLink
from delan.systems.two_link import TwoLink

HAS_PIN = importlib.util.find_spec("pinocchio") is not None
CLOSED_FORM = [
    ("pendulum", None),
    ("two-link", None),
    ("cartpole", None),
    ("furuta", None),
    ("n-link", 1),
    ("n-link", 3),
    ("n-link", 5),
]


def _states(n, B=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    r = lambda s: (torch.rand(B, n, generator=g, dtype=dtype) * 2 - 1) * s  # noqa: E731
    return r(3.0), r(3.0), r(5.0)


def euler_lagrange_reference(system, q, qd):
    """H, c, g from the system's own T(q, qd), V(q) by autograd (the DESIGN's reference path)."""
    q = q.clone().requires_grad_(True)
    qd = qd.clone().requires_grad_(True)
    t = system.terms(q, qd)
    p = torch.autograd.grad(t.T.sum(), qd, create_graph=True)[0]  # dT/dqd (B, n)
    dTdq = torch.autograd.grad(t.T.sum(), q, create_graph=True, materialize_grads=True)[0]
    n = q.shape[1]
    H = torch.stack(
        [torch.autograd.grad(p[:, i].sum(), qd, retain_graph=True, materialize_grads=True)[0] for i in range(n)], 1
    )
    dpdq = torch.stack(
        [torch.autograd.grad(p[:, i].sum(), q, retain_graph=True, materialize_grads=True)[0] for i in range(n)], 1
    )
    c = (dpdq @ qd.unsqueeze(-1)).squeeze(-1) - dTdq  # Hdot qd - 1/2 d(qd^T H qd)/dq
    g = torch.autograd.grad(t.V.sum(), q)[0]
    return H.detach(), c.detach(), g.detach()


@pytest.mark.parametrize("name,n", CLOSED_FORM)
@pytest.mark.parametrize("friction", [False, True])
def test_closed_form_matches_euler_lagrange(name, n, friction):
    s = make_system(name, n_dof=n, friction=friction)
    q, qd, qdd = _states(s.n_dof)
    t = s.terms(q, qd, qdd)
    H, c, g = euler_lagrange_reference(s, q, qd)
    torch.testing.assert_close(t.H, H, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(t.coriolis, c, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(t.gravity, g, rtol=1e-10, atol=1e-10)
    # H symmetric positive definite
    torch.testing.assert_close(t.H, t.H.transpose(-1, -2), rtol=0, atol=0)
    assert torch.linalg.eigvalsh(t.H).min() > 0
    # tau = H qdd + c + g + f, tau_inertial = H qdd
    inertial = (t.H @ qdd.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(t.inertial, inertial)
    torch.testing.assert_close(t.tau, inertial + t.coriolis + t.gravity + t.friction)
    if friction:
        assert (t.friction * qd > 0).all()  # friction opposes motion
    else:
        assert (t.friction == 0).all()
    # forward dynamics inverts inverse dynamics
    torch.testing.assert_close(s.forward_dynamics(q, qd, t.tau), qdd, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name,n", CLOSED_FORM)
def test_dtype_follows_input(name, n):
    s = make_system(name, n_dof=n)
    q, qd, qdd = _states(s.n_dof, dtype=torch.float32)
    t = s.terms(q, qd, qdd)
    assert all(x.dtype == torch.float32 for x in (t.H, t.coriolis, t.gravity, t.friction, t.T, t.V, t.tau))
    t64 = s.terms(q.double(), qd.double(), qdd.double())
    torch.testing.assert_close(t.tau.double(), t64.tau, rtol=1e-4, atol=1e-4)
    assert s.inverse_dynamics(q[0], qd[0], qdd[0]).shape == (1, s.n_dof)  # (n,) accepted


def test_two_link_equals_n_link_with_same_parameters():
    a = TwoLink(masses=(2.0, 1.0), lengths=(0.5, 0.5))
    b = NLink(2, masses=(2.0, 1.0), lengths=(0.5, 0.5))
    q, qd, qdd = _states(2)
    ta, tb = a.terms(q, qd, qdd), b.terms(q, qd, qdd)
    for x, y in zip(ta, tb):
        torch.testing.assert_close(x, y)


def test_registry_and_unknown_name():
    assert SYSTEMS == ["pendulum", "two-link", "cartpole", "furuta", "n-link", "panda"]
    for name in SYSTEMS[:-1]:
        s = make_system(name)
        assert len(s.joint_names) == s.n_dof == len(s.q_min) == len(s.q_max) == len(s.qd_max)
        assert np.all(s.q_min < s.q_max)
    assert make_system("two_link").n_dof == 2
    assert make_system("n-link", n_dof=6).n_dof == 6
    with pytest.raises(DataError, match="valid systems: pendulum, two-link"):
        make_system("tripod")
    with pytest.raises(DataError, match="2 degrees of freedom"):
        make_system("two-link", n_dof=3)


def test_panda_without_pinocchio_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pinocchio", None)  # import fails as if not installed
    with pytest.raises(DataError, match=r'pip install "delan\[robots\]"'):
        make_system("panda")


def planar_chain_urdf(masses, lengths, coms, inertias):
    """A URDF of the planar chain: joints about z, links hanging along -y at q = 0."""
    parts = ['<robot name="chain"><link name="base"/>']
    parent, offset = "base", 0.0
    for i, (m, l, lc, I) in enumerate(zip(masses, lengths, coms, inertias)):
        parts.append(
            f'<joint name="j{i}" type="revolute"><parent link="{parent}"/><child link="l{i}"/>'
            f'<origin xyz="0 {-offset} 0" rpy="0 0 0"/><axis xyz="0 0 1"/>'
            f'<limit lower="-3.14" upper="3.14" velocity="6" effort="100"/></joint>'
            f'<link name="l{i}"><inertial><origin xyz="0 {-lc} 0" rpy="0 0 0"/><mass value="{m}"/>'
            f'<inertia ixx="{I}" iyy="{I}" izz="{I}" ixy="0" ixz="0" iyz="0"/></inertial></link>'
        )
        parent, offset = f"l{i}", l
    parts.append("</robot>")
    return "".join(parts)


@pytest.mark.skipif(not HAS_PIN, reason="pinocchio (pip install pin) not installed")
@pytest.mark.parametrize("n", [2, 4])
def test_closed_form_agrees_with_pinocchio(n):
    from delan.systems.panda import PinocchioSystem

    rng = np.random.default_rng(n)
    masses, lengths = rng.uniform(0.5, 2.0, n), rng.uniform(0.3, 0.8, n)
    coms, inertias = lengths * rng.uniform(0.3, 0.7, n), rng.uniform(0.01, 0.1, n)
    closed = TwoLink(masses, lengths, coms, inertias) if n == 2 else NLink(n, masses, lengths, coms, inertias)
    ref = PinocchioSystem(planar_chain_urdf(masses, lengths, coms, inertias), gravity=(0, -9.81, 0))
    q, qd, qdd = _states(n)
    a, b = closed.terms(q, qd, qdd), ref.terms(q, qd, qdd)
    for f in ("H", "coriolis", "gravity", "T", "tau"):
        torch.testing.assert_close(getattr(a, f), getattr(b, f), rtol=1e-9, atol=1e-9, msg=f)
    # potential energies agree up to a constant
    dV = a.V - b.V
    torch.testing.assert_close(dV, dV[:1].expand_as(dV), rtol=0, atol=1e-9)


@pytest.mark.skipif(not HAS_PIN, reason="pinocchio (pip install pin) not installed")
def test_panda_terms():
    import pinocchio as pin

    s = make_system("panda", friction=True)
    assert s.n_dof == 7 and s.joint_names[0] == "panda_joint1"
    rng = np.random.default_rng(0)
    q = torch.as_tensor(rng.uniform(s.q_min, s.q_max, (8, 7)))
    qd, qdd = torch.as_tensor(rng.normal(size=(8, 7))), torch.as_tensor(rng.normal(size=(8, 7)))
    t = s.terms(q, qd, qdd)
    torch.testing.assert_close(t.H, t.H.transpose(-1, -2), rtol=0, atol=0)
    assert torch.linalg.eigvalsh(t.H).min() > 0
    data = s.model.createData()
    for b in range(8):
        tau_rnea = pin.rnea(s.model, data, q[b].numpy(), qd[b].numpy(), qdd[b].numpy())
        np.testing.assert_allclose(t.tau[b].numpy() - t.friction[b].numpy(), tau_rnea, rtol=1e-10, atol=1e-10)
    # the RNEA / ABA fast paths agree with the assembled terms
    torch.testing.assert_close(s.inverse_dynamics(q, qd, qdd), t.tau, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s.forward_dynamics(q, qd, t.tau), qdd, rtol=1e-8, atol=1e-8)
    # c is the Coriolis matrix times qd
    C = pin.computeCoriolisMatrix(s.model, data, q[0].numpy(), qd[0].numpy())
    np.testing.assert_allclose(t.coriolis[0].numpy(), C @ qd[0].numpy(), atol=1e-10)
    # published total mass of links 1-7 (Gaz et al. 2019): about 16.06 kg
    assert abs(sum(i.mass for i in s.model.inertias) - 16.062) < 0.01


@pytest.mark.parametrize("name,n", [("pendulum", None), ("two-link", None), ("cartpole", None), ("n-link", 3)])
def test_armature_adds_rotor_inertia(name, n):
    """armature > 0 adds diag(armature) to H; H, c, g still follow from the system's own T and V
    by autograd Euler-Lagrange, and forward dynamics inverts inverse dynamics."""
    plain = make_system(name, n_dof=n, friction=True)
    arm = np.linspace(0.05, 0.2, plain.n_dof)
    s = make_system(name, n_dof=n, friction=True, armature=arm)
    q, qd, qdd = _states(s.n_dof, seed=3)
    t, t0 = s.terms(q, qd, qdd), plain.terms(q, qd, qdd)
    torch.testing.assert_close(t.H - t0.H, torch.diag_embed(torch.as_tensor(arm).expand_as(q)), rtol=0, atol=1e-12)
    torch.testing.assert_close(t.T - t0.T, 0.5 * (torch.as_tensor(arm) * qd**2).sum(-1), rtol=0, atol=1e-12)
    H, c, g = euler_lagrange_reference(s, q, qd)
    torch.testing.assert_close(t.H, H, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(t.coriolis, c, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(t.gravity, g, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(t.inertial, (t.H @ qdd.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(s.forward_dynamics(q, qd, t.tau), qdd, rtol=1e-9, atol=1e-9)
    assert s.describe()["armature"] == pytest.approx(arm.tolist()) and plain.describe()["armature"] == [0.0] * s.n_dof


def test_armature_checked_and_passed_on_by_generate():
    from delan.data.generate import generate_dataset

    with pytest.raises(DataError, match=r"system 'two-link': armature must be one number or one per joint \(2\)"):
        make_system("two-link", armature=[0.1, 0.2, 0.3])
    with pytest.raises(DataError, match=r"armature must be finite and >= 0"):
        make_system("two-link", armature=-1.0)
    ds = generate_dataset("two-link", "fourier", 1, duration=0.2, rate=50, armature=[0.05, 0.02])
    assert ds.attrs["generator"]["system_params"]["armature"] == [0.05, 0.02]
    tr = ds[ds.names[0]]
    plain = make_system("two-link").mass_matrix(torch.as_tensor(tr.q)).numpy()
    np.testing.assert_allclose(tr.truth["H"] - plain, np.broadcast_to(np.diag([0.05, 0.02]), plain.shape), atol=1e-12)


@pytest.mark.skipif(not HAS_PIN, reason="pinocchio (pip install pin) not installed")
def test_pinocchio_armature_and_joint_types():
    from delan.systems.panda import PinocchioSystem

    urdf = planar_chain_urdf([1.0, 0.8], [0.5, 0.4], [0.25, 0.2], [0.02, 0.01])
    plain = PinocchioSystem(urdf, gravity=(0, -9.81, 0))
    s = PinocchioSystem(urdf, gravity=(0, -9.81, 0), armature=[0.1, 0.05])
    assert s.joint_types == ["revolute", "revolute"]
    q, qd, qdd = _states(2)
    torch.testing.assert_close(
        s.terms(q, qd).H - plain.terms(q, qd).H, torch.diag_embed(torch.tensor([0.1, 0.05], dtype=q.dtype).expand_as(q))
    )
    tau = s.inverse_dynamics(q, qd, qdd)
    torch.testing.assert_close(tau, s.terms(q, qd, qdd).tau, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s.forward_dynamics(q, qd, tau), qdd, rtol=1e-8, atol=1e-8)


@pytest.mark.skipif(not HAS_PIN, reason="pinocchio (pip install pin) not installed")
def test_pinocchio_joint_types_from_urdf():
    from delan.systems.panda import PinocchioSystem

    urdf = planar_chain_urdf([1.0, 0.8], [0.5, 0.4], [0.25, 0.2], [0.02, 0.01]).replace(
        'name="j0" type="revolute"', 'name="j0" type="prismatic"'
    )
    assert PinocchioSystem(urdf).joint_types == ["prismatic", "revolute"]
    assert make_system("panda").joint_types == ["revolute"] * 7
