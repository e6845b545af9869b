"""The Hamiltonian models: exact Hamilton's equations of their own H(q, p), in float64.

References use only the models' plain H(q, p) (network values) and let torch.func / autograd
differentiate it, so they share no derivative code with the closed-form paths they check.
"""

import pytest
import torch
from torch.func import grad, hessian, vmap

from delan import load_model, save_model
from delan import reference as ref
from delan.models import (
    BlackBoxHamiltonianNetwork,
    DeepHamiltonianNetwork,
    IndefiniteMassMatrixError,
    MomentumSolveError,
)

F64 = torch.float64
KINDS = ("structured", "black-box")


def rel(a, b):
    return float((a - b).abs().max().detach() / b.abs().max().detach().clamp_min(1e-300))


def states(n, B=4, seed=0, k=4):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, n, dtype=F64, generator=g) for _ in range(k))


def make(kind, n, seed=0, **kw):
    """Options cycle with n: revolute joints, friction, eps = 0 (solves with L itself) or not,
    separate networks, output scales."""
    torch.manual_seed(seed)
    kw.setdefault("revolute", [i % 2 == 0 for i in range(n)] if n % 2 else None)
    kw.setdefault("friction", n % 3 != 0)
    if kind == "structured":
        kw.setdefault("epsilon", 0.0 if n % 2 else 1e-3)
        kw.setdefault("shared_trunk", n != 4)
        if n == 5:
            kw.setdefault("mass_scale", [3.0, 0.5, 0.1, 0.02, 1e-3])
            kw.setdefault("potential_scale", 7.0)
        return DeepHamiltonianNetwork(n, width=16, depth=2, dtype=F64, **kw)
    if n == 5:
        kw.setdefault("mass_scale", [3.0, 0.5, 0.1, 0.02, 1e-3])
        kw.setdefault("energy_scale", 7.0)
    return BlackBoxHamiltonianNetwork(n, width=16, depth=2, dtype=F64, **kw)


def autograd_field(model, q, p, tau):
    """(qd, pdot) of Hamilton's equations by torch.func on the model's H(q, p)."""
    H = lambda qi, pi: model.hamiltonian(qi.unsqueeze(0), pi.unsqueeze(0))[0]  # noqa: E731
    dH_dq, dH_dp = vmap(grad(H, 0))(q, p), vmap(grad(H, 1))(q, p)
    return dH_dp, -dH_dq + tau - model.friction(q, dH_dp)


def time_derivative(f, q, qd, qdd):
    """d/dt f(q(t), qd(t)) = J_q qd + J_qd qdd by autograd (double-backward trick)."""
    q, qd = q.clone().requires_grad_(True), qd.clone().requires_grad_(True)
    y = f(q, qd)
    u = torch.zeros_like(y, requires_grad=True)
    gq, gqd = torch.autograd.grad(y, (q, qd), grad_outputs=u, create_graph=True)
    return torch.autograd.grad((gq * qd).sum() + (gqd * qdd).sum(), u)[0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", range(1, 8))
def test_hamilton_equations_exact(kind, n):
    model = make(kind, n, seed=n)
    q, p, qd, tau = states(n, seed=n)
    qd_m, pdot_m = model.hamiltonian_vector_field(q, p, tau)
    qd_r, pdot_r = autograd_field(model, q, p, tau)
    assert rel(qd_m, qd_r) <= 1e-10
    assert rel(pdot_m, pdot_r) <= 1e-10
    H, dH_dq, dH_dp = model.hamiltonian_gradients(q, p)
    assert rel(H, model.hamiltonian(q, p)) <= 1e-13
    assert rel(dH_dp, model.velocity(q, p)) <= 1e-13
    # the velocity <-> momentum maps invert each other
    pm = model.momentum(q, qd)
    assert rel(model.velocity(q, pm), qd) <= 1e-10
    assert rel(model.momentum(q, model.velocity(q, p)), p) <= 1e-10


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_dynamics_from_hamiltons_equations(kind, n):
    """tau = d/dt p(q, qd) + dH/dq + f with the momentum's time derivative and dH/dq by autograd;
    forward(inverse(qdd)) = qdd; the Dynamics terms add up; energy = H; power = dH/dt."""
    model = make(kind, n, seed=10 + n)
    q, qd, qdd, tau = states(n, seed=10 + n)
    p = model.momentum(q, qd).detach()
    pdot = time_derivative(model.momentum, q, qd, qdd)
    _, pdot_free = autograd_field(model, q, p, torch.zeros_like(tau))  # -dH/dq - f
    tau_ref = pdot - pdot_free
    tau_m = model.inverse_dynamics(q, qd, qdd)
    assert rel(tau_m, tau_ref) <= 1e-9
    assert rel(model.forward_dynamics(q, qd, tau_m), qdd) <= 1e-9
    assert (
        rel(
            model.forward_dynamics(q, qd, tau),
            model.forward_dynamics(q, qd, tau_m)
            + torch.linalg.solve(model.terms(q, qd).H, (tau - tau_m).unsqueeze(-1)).squeeze(-1),
        )
        <= 1e-9
    )
    t = model.terms(q, qd, qdd)
    assert rel(t.tau, tau_m) <= 1e-12
    assert rel(t.inertial + t.coriolis + t.gravity + t.friction, t.tau) <= 1e-12
    # energy is H at the state's momentum; its rate along qdd is qd^T (tau - f)
    T, V = model.energy(q, qd)
    assert rel(T + V, model.hamiltonian(q, p)) <= 1e-12
    rate = ref.energy_rate(model.energy, q, qd, qdd)
    assert rel(model.power(q, qd, tau_m), rate) <= 1e-9
    # gravity is dV/dq, the torque that holds the model still
    assert (
        rel(
            model.gravity(q),
            model.inverse_dynamics(q, torch.zeros_like(qd), torch.zeros_like(qd))
            - model.friction(q, torch.zeros_like(qd)),
        )
        <= 1e-10
    )
    qg = q.clone().requires_grad_(True)
    assert rel(model.gravity(q), torch.autograd.grad(model.potential(qg).sum(), qg)[0]) <= 1e-9


@pytest.mark.parametrize("kind", KINDS)
def test_mass_matrix_spd_and_inverse_of_hessian(kind):
    n = 4
    model = make(kind, n, seed=3)
    q, qd, _, _ = states(n, B=6, seed=3)
    M = model.mass_matrix(q).detach()
    assert rel(M, M.transpose(-1, -2)) <= 1e-14
    assert (torch.linalg.eigvalsh(M) > 0).all()
    # M = (d2H/dp2)^-1 at the momentum of the velocity (for the structured H everywhere)
    for v in (torch.zeros_like(qd), qd):
        p = model.momentum(q, v).detach()
        H = lambda qi, pi: model.hamiltonian(qi.unsqueeze(0), pi.unsqueeze(0))[0]  # noqa: E731
        H_pp = vmap(hessian(H, 1))(q, p)
        assert rel(model.terms(q, v).H @ H_pp, torch.eye(n, dtype=F64).expand(6, n, n)) <= 1e-9


def test_structured_is_the_legendre_dual_of_delan():
    """Same M and V, so the same equation of motion as the structured DeLaN with its weights."""
    from delan.models import DeepLagrangianNetwork

    n = 3
    h = make("structured", n, seed=4)
    cfg = h.config
    lag = DeepLagrangianNetwork(**cfg)
    lag.load_state_dict(h.state_dict())
    q, qd, qdd, _ = states(n, seed=4)
    assert rel(h.inverse_dynamics(q, qd, qdd), lag.inverse_dynamics(q, qd, qdd)) <= 1e-13
    # and H(q, p) = 1/2 p^T M^-1 p + V with M from values only
    p = h.momentum(q, qd)
    M, V = lag.mass_matrix_and_potential(q)
    assert rel(h.hamiltonian(q, p), 0.5 * (p * torch.linalg.solve(M, p.unsqueeze(-1)).squeeze(-1)).sum(-1) + V) <= 1e-12


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_all_parameters_and_are_exact(kind):
    """Parameters train by autograd through the closed-form derivatives (and, for the black box,
    through the implicit momentum): every parameter gets a gradient, equal to a central finite
    difference along a random direction."""
    n = 2
    model = make(kind, n, seed=5, friction=True)
    q, qd, qdd, tau = states(n, seed=5)
    w = torch.randn(q.shape, dtype=F64, generator=torch.Generator().manual_seed(1))

    def objective():
        return (model.inverse_dynamics(q, qd, qdd) * w).sum() + model.hamiltonian_vector_field(q, qd, tau)[1].sum()

    # a constant added to H changes no dynamics: the black box's output bias has no gradient
    params = [x for name, x in model.named_parameters() if not (kind == "black-box" and name == "net.output.bias")]
    grads = torch.autograd.grad(objective(), params)
    assert len(params) >= 7 and all(gr.abs().sum() > 0 for gr in grads)
    direction = [torch.randn_like(x) for x in params]
    h = 1e-6
    with torch.no_grad():
        for x, d in zip(params, direction):
            x.add_(h * d)
        up = objective()
        for x, d in zip(params, direction):
            x.sub_(2 * h * d)
        down = objective()
        for x, d in zip(params, direction):
            x.add_(h * d)
    fd = (up - down) / (2 * h)
    analytic = sum((gr * d).sum() for gr, d in zip(grads, direction))
    assert abs(float(analytic - fd)) <= 1e-6 * max(1.0, abs(float(fd)))


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind, tmp_path):
    model = make(kind, 5, seed=6)
    path = str(tmp_path / "model.pt")
    save_model(model, path)
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    q, qd, qdd, tau = states(5, seed=6)
    assert torch.equal(loaded.inverse_dynamics(q, qd, qdd), model.inverse_dynamics(q, qd, qdd))
    assert torch.equal(loaded.hamiltonian(q, qd), model.hamiltonian(q, qd))


def test_black_box_needs_convexity_in_p():
    # without the reference kinetic energy a random network is not convex in p: a clear error
    model = make("black-box", 3, seed=7, kinetic_prior=False)
    q, qd, qdd, _ = states(3, B=64, seed=7)
    with pytest.raises(IndefiniteMassMatrixError, match="not convex in p"):
        model.inverse_dynamics(q, qd, qdd)
    # Newton that runs out of steps says so
    model = make("black-box", 3, seed=7, newton_max_iter=1)
    with pytest.raises(MomentumSolveError, match="did not converge"):
        model.momentum(q, 3 * qd)


def test_bad_input_and_options():
    model = make("structured", 2)
    with pytest.raises(ValueError, match=r"p must have shape"):
        model.hamiltonian(torch.zeros(3, 2, dtype=F64), torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="energy_scale"):
        BlackBoxHamiltonianNetwork(2, energy_scale=-1.0)
    with pytest.raises(ValueError, match="mass_scale"):
        BlackBoxHamiltonianNetwork(2, mass_scale=[1.0])
