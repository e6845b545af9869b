"""The black-box Lagrangian network: exact Euler–Lagrange dynamics of its own L(q, qd)."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ddn
from delan import reference as ref
from delan.models import BlackBoxLagrangianNetwork, IndefiniteMassMatrixError

F64 = torch.float64
SMOOTH = [a for a in ddn.available_activations() if a not in ("linear", "relu")]


def rel(a, b):
    return float((a - b).abs().max().detach() / b.abs().max().detach().clamp_min(1e-300))


def states(n, B=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, n, dtype=F64, generator=g) for _ in range(3))


def make(n, activation="tanh", revolute=False, friction=False, seed=0, **kw):
    torch.manual_seed(seed)
    rev = [i % 2 == 0 for i in range(n)] if revolute else None
    return BlackBoxLagrangianNetwork(
        n, width=16, depth=2, activation=activation, revolute=rev, friction=friction, dtype=F64, **kw
    )


def check_exact(model, q, qd, qdd):
    t = model.terms(q, qd, qdd)
    tau_ref = ref.euler_lagrange_from_lagrangian(model.lagrangian, q, qd, qdd) + model.friction(q, qd)
    assert rel(t.tau, tau_ref) <= 1e-10
    assert rel(model.inverse_dynamics(q, qd, qdd), tau_ref) <= 1e-10
    r = ref.model_terms(model, q, qd, qdd)
    for name in ("H", "coriolis", "gravity", "friction", "T", "V", "inertial"):
        assert rel(getattr(t, name), getattr(r, name)) <= 1e-10, name
    # the Hamiltonian E = T + V changes only by the work of the non-friction torques
    rate = ref.energy_rate(model.energy, q, qd, qdd)
    assert rel(model.power(q, qd, t.tau), rate) <= 1e-10
    assert rel(t.H, t.H.transpose(-1, -2)) <= 1e-14


CASES = [
    (act, n, rev, fric)
    for act, (n, rev, fric) in zip(
        SMOOTH,
        itertools.cycle([(1, False, False), (2, True, True), (3, True, False), (7, False, True), (4, True, True)]),
    )
]


@pytest.mark.parametrize("activation,n,revolute,friction", CASES)
def test_exact_per_activation(activation, n, revolute, friction):
    check_exact(make(n, activation, revolute, friction), *states(n))


@settings(max_examples=8, deadline=None)
@given(
    n=st.integers(1, 7),
    activation=st.sampled_from(SMOOTH),
    revolute=st.booleans(),
    friction=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_exact_random(n, activation, revolute, friction, seed):
    check_exact(make(n, activation, revolute, friction, seed), *states(n, B=3, seed=seed))


def test_definitions_of_the_split():
    model = make(3, revolute=True)
    q, qd, qdd = states(3)
    zero = torch.zeros_like(qd)
    t = model.terms(q, qd, qdd)
    # gravity is -dL/dq at rest; the mass matrix convenience is H at rest
    assert rel(model.gravity(q), model.terms(q, zero).gravity) <= 1e-13
    assert rel(model.gravity(q), t.gravity) <= 1e-13
    assert rel(model.mass_matrix(q), model.terms(q, zero).H) <= 1e-13
    assert rel(model.potential(q), -model.lagrangian(q, zero)) <= 1e-14
    # at rest there is no Coriolis force and no kinetic energy
    rest = model.terms(q, zero)
    assert rest.coriolis.abs().max() <= 1e-12 * t.coriolis.abs().max()
    assert rest.T.abs().max() <= 1e-13
    # E = qd^T dL/dqd - L, by autograd
    qd_ = qd.clone().requires_grad_(True)
    (p,) = torch.autograd.grad(model.lagrangian(q, qd_).sum(), qd_)
    T, V = model.energy(q, qd)
    assert rel(T + V, (qd * p).sum(-1) - model.lagrangian(q, qd)) <= 1e-12


def test_forward_dynamics_where_convex_and_clear_error_where_not():
    model = make(1, "softplus", regularisation=0.0, seed=2)
    q, qd, qdd = states(1, B=400, seed=2)
    H = model.terms(q, qd).H[:, 0, 0].detach()
    pos, neg = H > 1e-3, H < 0
    assert pos.any() and neg.any()  # a random L is convex in qd in some places only
    tau = model.inverse_dynamics(q[pos], qd[pos], qdd[pos])
    assert rel(model.forward_dynamics(q[pos], qd[pos], tau), qdd[pos]) <= 1e-9
    with pytest.raises(IndefiniteMassMatrixError, match="not positive definite"):
        model.forward_dynamics(q[neg], qd[neg], tau[:1].expand(int(neg.sum()), 1))


def test_torch_func_and_training():
    model = make(2, revolute=True, friction=True)
    q, qd, qdd = states(2, B=3)

    def one(a, b, c):
        return model.inverse_dynamics(a, b, c)[0]

    assert rel(torch.func.vmap(one)(q, qd, qdd), model.inverse_dynamics(q, qd, qdd)) <= 1e-13
    J = torch.func.vmap(torch.func.jacrev(one, argnums=2))(q, qd, qdd)
    assert rel(J, model.terms(q, qd).H) <= 1e-12
    model.inverse_dynamics(q, qd, qdd).square().sum().backward()
    for name, p in model.named_parameters():  # a constant added to L (output bias) changes nothing
        assert (p.grad is None) == (name == "net.output.bias"), name
        assert p.grad is None or torch.isfinite(p.grad).all()


@pytest.mark.parametrize("arg", ["q", "qd", "qdd"])
def test_bad_inputs(arg):
    model = make(2)
    x = dict(zip(("q", "qd", "qdd"), states(2)))
    for bad, words in [(x[arg][:, :1], "(B, 2)"), (x[arg].float(), "dtype"), (x[arg].to("meta"), "device")]:
        y = dict(x, **{arg: bad})
        with pytest.raises(ValueError, match=arg) as err:
            model.inverse_dynamics(y["q"], y["qd"], y["qdd"])
        assert words in str(err.value) and "(B, 2)" in str(err.value)


def test_options():
    with pytest.raises(ValueError):
        BlackBoxLagrangianNetwork(2, regularisation=-1.0)
    with pytest.raises(ValueError):
        BlackBoxLagrangianNetwork(0)
    model = make(2, revolute=True, friction=True)
    clone = BlackBoxLagrangianNetwork(**model.config)
    clone.load_state_dict(model.state_dict())
    q, qd, qdd = states(2)
    assert torch.equal(clone.inverse_dynamics(q, qd, qdd), model.inverse_dynamics(q, qd, qdd))
