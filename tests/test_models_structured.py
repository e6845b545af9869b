"""The structured DeLaN: exact Euler–Lagrange dynamics of its own energies, in float64."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ddn
from delan import reference as ref
from delan.models import DeepLagrangianNetwork

F64 = torch.float64
SMOOTH = [a for a in ddn.available_activations() if a not in ("linear", "relu")]


def rel(a, b):
    return float((a - b).abs().max().detach() / b.abs().max().detach().clamp_min(1e-300))


def states(n, B=5, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return tuple(scale * torch.randn(B, n, dtype=F64, generator=g) for _ in range(3))


def make(n, activation="softplus", shared=True, revolute=False, friction=False, seed=0, **kw):
    torch.manual_seed(seed)
    rev = [i % 2 == 0 for i in range(n)] if revolute else None
    kw.setdefault("epsilon", 1e-3)
    return DeepLagrangianNetwork(
        n,
        width=16,
        depth=2,
        activation=activation,
        revolute=rev,
        shared_trunk=shared,
        friction=friction,
        dtype=F64,
        **kw,
    )


def check_exact(model, q, qd, qdd):
    """tau from every path equals the Euler-Lagrange equation of energy(q, qd) by autograd."""
    t = model.terms(q, qd, qdd)
    tau_ref = ref.euler_lagrange_from_energy(model.energy, q, qd, qdd) + model.friction(q, qd)
    assert rel(t.tau, tau_ref) <= 1e-10
    assert rel(model.inverse_dynamics(q, qd, qdd), tau_ref) <= 1e-10
    with torch.inference_mode():
        assert rel(model.inverse_dynamics(q, qd, qdd), tau_ref) <= 1e-10
    # the decomposition against autograd's (one jvp, two grads)
    r = ref.model_terms(model, q, qd, qdd, create_graph=False)
    for name in ("H", "coriolis", "gravity", "friction", "T", "V", "inertial"):
        assert rel(getattr(t, name), getattr(r, name)) <= 1e-10, name
    # forward dynamics inverts inverse dynamics
    assert rel(model.forward_dynamics(q, qd, t.tau), qdd) <= 1e-9
    # energy balance: d(T+V)/dt along qdd = qd^T (tau - f)
    rate = ref.energy_rate(model.energy, q, qd, qdd)
    assert rel(model.power(q, qd, t.tau), rate) <= 1e-10
    # H symmetric positive definite
    assert rel(t.H, t.H.transpose(-1, -2)) <= 1e-15
    assert (torch.linalg.eigvalsh(t.H) > 0).all()


# every smooth activation once, cycling through sizes and options
CASES = [
    (act, n, shared, rev, fric)
    for act, (n, shared, rev, fric) in zip(
        SMOOTH,
        itertools.cycle(
            [
                (1, True, False, False),
                (2, False, True, True),
                (3, True, True, False),
                (7, True, False, True),
                (4, False, False, False),
                (5, True, True, True),
            ]
        ),
    )
]


@pytest.mark.parametrize("activation,n,shared,revolute,friction", CASES)
def test_exact_per_activation(activation, n, shared, revolute, friction):
    model = make(n, activation, shared, revolute, friction)
    check_exact(model, *states(n))


@pytest.mark.parametrize("shared,revolute,friction", list(itertools.product([True, False], repeat=3)))
def test_exact_every_option(shared, revolute, friction):
    model = make(3, "softplus", shared, revolute, friction, seed=1)
    check_exact(model, *states(3, seed=1))


@pytest.mark.parametrize("shared,revolute", [(True, False), (True, True), (False, True)])
def test_exact_with_output_scales(shared, revolute):
    """mass_scale / potential_scale reparametrise H and V; the dynamics stay those of the model's
    own energy, and H's diagonal and V scale as asked."""
    scales = [3.0, 0.01, 1e-4]
    model = make(3, "softplus", shared, revolute, True, seed=2, mass_scale=scales, potential_scale=25.0)
    q, qd, qdd = states(3, seed=2)
    check_exact(model, q, qd, qdd)
    plain = make(3, "softplus", shared, revolute, True, seed=2, epsilon=0.0)
    scaled = make(3, "softplus", shared, revolute, True, seed=2, epsilon=0.0, mass_scale=scales, potential_scale=25.0)
    d = torch.tensor(scales, dtype=F64).sqrt()
    assert rel(scaled.mass_matrix(q), d[:, None] * plain.mass_matrix(q) * d[None, :]) <= 1e-12
    assert rel(scaled.potential(q), 25.0 * plain.potential(q)) <= 1e-12
    assert model.config["mass_scale"] == scales and model.config["potential_scale"] == 25.0
    with pytest.raises(ValueError, match="mass_scale"):
        make(3, mass_scale=[1.0, -1.0, 1.0])


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 7),
    activation=st.sampled_from(SMOOTH),
    shared=st.booleans(),
    revolute=st.booleans(),
    friction=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_exact_random(n, activation, shared, revolute, friction, seed):
    model = make(n, activation, shared, revolute, friction, seed=seed)
    check_exact(model, *states(n, B=3, seed=seed))


def test_conveniences_match_terms():
    model = make(3, revolute=True, friction=True)
    q, qd, qdd = states(3)
    t = model.terms(q, qd, qdd)
    zero = torch.zeros_like(qd)
    assert rel(model.mass_matrix(q), t.H) <= 1e-13
    assert rel(model.coriolis(q, qd), t.coriolis) <= 1e-13
    assert rel(model.gravity(q), t.gravity) <= 1e-13
    assert rel(model.gravity(q), model.terms(q, zero).gravity) <= 1e-13
    assert rel(model.friction(q, qd), t.friction) <= 1e-13
    T, V = model.energy(q, qd)
    assert rel(T, t.T) <= 1e-13 and rel(V, t.V) <= 1e-13
    assert rel(model.potential(q), t.V) <= 1e-13
    assert rel(t.tau, t.inertial + t.coriolis + t.gravity + t.friction) <= 1e-14
    # Coriolis forces do no work: qd^T c = 1/2 qd^T Hdot qd, and c is quadratic in qd
    assert rel(model.coriolis(q, 2 * qd), 4 * t.coriolis) <= 1e-12
    # the gravity shortcut of the shared trunk without features
    plain = make(3)
    assert rel(plain.gravity(q), plain.terms(q, qd).gravity) <= 1e-13


def test_mass_matrix_positive_definite_for_any_input():
    # x^T H x = |L^T x|^2 + eps |x|^2 >= eps |x|^2: check it numerically far outside the training
    # range, with raw network outputs pushed out to huge and tiny diagonals
    q = 50 * torch.randn(2000, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    for shift, eps, scale in [(1e-3, 1e-5, 10.0), (0.1, 1e-2, 30.0), (1e-3, 1e-3, 1.0)]:
        model = make(4, diagonal_shift=shift, epsilon=eps, seed=3)
        with torch.no_grad():
            model.trunk.output.weight.mul_(scale)
        H = model.mass_matrix(q).detach()
        assert torch.isfinite(H).all()
        assert rel(H, H.transpose(-1, -2)) <= 1e-15
        lam = torch.linalg.eigvalsh(H)
        assert (lam[:, 0] >= eps - 1e-13 * lam[:, -1]).all() and (lam[:, 0] > 0).all()
        assert (torch.linalg.cholesky_ex(H)[1] == 0).all()
        # L itself is invertible: its diagonal is at least the shift
        L = model._L(model._values(q)[0])
        assert (torch.diagonal(L, dim1=-2, dim2=-1) >= shift).all()
        assert torch.equal(L, torch.tril(L))


def test_revolute_features_make_it_periodic():
    model = make(3, revolute=True)
    q, qd, qdd = states(3)
    shift = torch.tensor([2 * torch.pi, 0.0, -4 * torch.pi], dtype=F64)  # joints 0 and 2 are revolute
    assert rel(model.inverse_dynamics(q + shift, qd, qdd), model.inverse_dynamics(q, qd, qdd)) <= 1e-12


def test_single_sample_and_float32_default():
    model = DeepLagrangianNetwork(2)
    assert next(model.parameters()).dtype == torch.float32
    q, qd, qdd = (torch.randn(2) for _ in range(3))
    tau = model.inverse_dynamics(q, qd, qdd)
    assert tau.shape == (1, 2) and tau.dtype == torch.float32
    assert model.terms(q, qd, qdd).H.shape == (1, 2, 2)
    # a batch of 1 broadcasts against a batch of B
    qb = torch.randn(4, 2)
    assert model.inverse_dynamics(qb, qd, qdd).shape == (4, 2)
    double = model.double()  # buffers follow the conversion
    assert double.inverse_dynamics(q.double(), qd.double(), qdd.double()).dtype == F64


def test_torch_func_vmap_and_jacrev():
    model = make(3, revolute=True, friction=True)
    q, qd, qdd = states(3, B=4)

    def one(qi, qdi, qddi):
        return model.inverse_dynamics(qi, qdi, qddi)[0]

    batched = torch.func.vmap(one)(q, qd, qdd)
    assert rel(batched, model.inverse_dynamics(q, qd, qdd)) <= 1e-13
    J = torch.func.vmap(torch.func.jacrev(one, argnums=2))(q, qd, qdd)
    assert rel(J, model.mass_matrix(q)) <= 1e-12
    # the generic path (separate networks) too
    sep = make(2, shared=False)
    q2, qd2, qdd2 = states(2, B=3)
    J2 = torch.func.vmap(torch.func.jacrev(lambda a, b, c: sep.inverse_dynamics(a, b, c)[0], argnums=2))(q2, qd2, qdd2)
    assert rel(J2, sep.mass_matrix(q2)) <= 1e-12


def test_parameters_train_through_inverse_dynamics():
    model = make(2, friction=True)
    q, qd, qdd = states(2)
    model.inverse_dynamics(q, qd, qdd).square().sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.friction_model.raw_viscous.grad.abs().sum() > 0


BAD = [
    (lambda q: q[:, :2], "(B, 3)"),  # wrong n_dof
    (lambda q: q.unsqueeze(0), "(B, 3)"),  # wrong rank
    (lambda q: q.float(), "dtype"),
    (lambda q: q.to("meta"), "device"),
    (lambda q: q[:3], "batch"),  # batch size mismatch
]


@pytest.mark.parametrize("bad,words", BAD)
@pytest.mark.parametrize("arg", ["q", "qd", "qdd", "tau"])
def test_bad_inputs_name_the_argument(bad, words, arg):
    model = make(3)
    x = dict(zip(("q", "qd", "qdd"), states(3, B=5)))
    x["tau"] = x["qdd"].clone()
    x[arg] = bad(x[arg])
    with pytest.raises(ValueError) as err:
        if arg == "tau":
            model.forward_dynamics(x["q"], x["qd"], x["tau"])
        else:
            model.inverse_dynamics(x["q"], x["qd"], x["qdd"])
    msg = str(err.value)
    assert arg in msg and ("(B, 3)" in msg or "(5, 3)" in msg)
    if words == "batch":
        assert "batch" in msg
    else:
        assert words in msg
    if arg != "tau":
        with pytest.raises(ValueError, match=arg):
            model.terms(x["q"], x["qd"], x["qdd"])


def test_not_a_tensor_and_bad_options():
    model = make(2)
    with pytest.raises(ValueError, match="qd"):
        model.inverse_dynamics(torch.zeros(1, 2, dtype=F64), [0.0, 0.0], torch.zeros(1, 2, dtype=F64))
    for kw in [
        dict(n_dof=0),
        dict(n_dof=2, diagonal_shift=0.0),
        dict(n_dof=2, epsilon=-1.0),
        dict(n_dof=2, revolute=[True]),
        dict(n_dof=2, activation="nope"),
        dict(n_dof=2, dtype="int7"),
    ]:
        with pytest.raises(ValueError):
            DeepLagrangianNetwork(**kw)


def test_config_rebuilds_the_same_architecture():
    model = make(3, revolute=True, friction=True, shared=False)
    clone = DeepLagrangianNetwork(**model.config)
    clone.load_state_dict(model.state_dict())
    q, qd, qdd = states(3)
    assert torch.equal(clone.inverse_dynamics(q, qd, qdd), model.inverse_dynamics(q, qd, qdd))


@pytest.mark.parametrize("depth", [0, 1, 3])
@pytest.mark.parametrize("revolute", [False, True])
def test_exact_other_depths(depth, revolute):
    torch.manual_seed(depth)
    rev = [True, False, True] if revolute else None
    model = DeepLagrangianNetwork(3, width=8, depth=depth, revolute=rev, epsilon=1e-3, dtype=F64)
    check_exact(model, *states(3, seed=depth))


def test_constructor_options_are_read_only():
    """Options the constant buffers are built from cannot be changed afterwards (before, setting
    epsilon left H = L L^T + eps I on the old eps and inertial = H qdd on the new one)."""
    model = DeepLagrangianNetwork(2, epsilon=1e-3, dtype=torch.float64)
    for name, value in [
        ("epsilon", 0.5),
        ("diagonal_shift", 1.0),
        ("shared_trunk", False),
        ("mass_scale", [2.0, 2.0]),
        ("potential_scale", 3.0),
    ]:
        with pytest.raises(AttributeError, match=f"{name} is fixed when the model is built"):
            setattr(model, name, value)
    assert model.epsilon == 1e-3 and model.diagonal_shift == 1e-3 and model.potential_scale == 1.0
    g = torch.Generator().manual_seed(0)
    q, qd, qdd = (torch.randn(5, 2, dtype=torch.float64, generator=g) for _ in range(3))
    t = model.terms(q, qd, qdd)
    torch.testing.assert_close(t.inertial, (t.H @ qdd.unsqueeze(-1)).squeeze(-1), rtol=1e-12, atol=1e-12)
