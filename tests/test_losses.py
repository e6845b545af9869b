"""Losses: values as defined, and parameter gradients equal to those through the autograd reference."""

import pytest
import torch

from delan import reference as ref
from delan.losses import LossWeights, Normaliser, delan_loss, loss_from_terms, resolve_weights
from delan.models import BlackBoxLagrangianNetwork, DeepLagrangianNetwork, FeedForwardModel

F64 = torch.float64


def data(n, B=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, qd, qdd = (torch.randn(B, n, dtype=F64, generator=g) for _ in range(3))
    tau = 3.0 * torch.randn(B, n, dtype=F64, generator=g)
    return {"q": q, "qd": qd, "qdd": qdd, "tau": tau}


def scales_of(b):
    return Normaliser.from_data(b["q"], b["qd"], b["qdd"], b["tau"])


def test_normaliser_and_values():
    b = data(3, B=50)
    s = scales_of(b)
    assert torch.allclose(s.tau_var, b["tau"].var(0, unbiased=False))
    assert torch.allclose(s.qdd_var, b["qdd"].var(0, unbiased=False))
    assert torch.allclose(s.power_var, (b["qd"] * b["tau"]).sum(-1).var(unbiased=False))
    assert Normaliser.from_dict(s.to_dict()).to_dict() == s.to_dict()
    assert (s.inertia > 0).all()
    torch.manual_seed(0)
    model = DeepLagrangianNetwork(3, width=8, friction=True, dtype=F64)
    total, parts = delan_loss(model, b, s, LossWeights(1.0, 2.0, 0.5))
    t = model.terms(b["q"], b["qd"], b["qdd"])
    inv = ((t.tau - b["tau"]) ** 2 / s.tau_var).sum(-1).mean()
    qdd = model.forward_dynamics(b["q"], b["qd"], b["tau"])
    fwd = ((qdd - b["qdd"]) ** 2 / s.qdd_var).sum(-1).mean()
    rate = ref.energy_rate(model.energy, b["q"], b["qd"], b["qdd"])
    pw = ((rate - (b["qd"] * (b["tau"] - t.friction)).sum(-1)) ** 2 / s.power_var).mean()
    # the default forward norm: e^T H e with e = qdd_model - qdd, over sum_j inertia_j var(qdd_j)
    e = qdd - b["qdd"]
    fwd_mass = torch.einsum("bi,bij,bj->b", e, t.H, e).mean() / (s.inertia * s.qdd_var).sum()
    for got, want in [
        (parts["inverse"], inv),
        (parts["forward"], fwd_mass),
        (parts["power"], pw),
        (total, inv + 2 * fwd_mass + 0.5 * pw),
    ]:
        assert torch.allclose(got, want, rtol=1e-10, atol=0)
    _, parts = delan_loss(model, b, s, LossWeights(1.0, 2.0, 0.5), forward_norm="joint")
    assert torch.allclose(parts["forward"], fwd, rtol=1e-10, atol=0)
    with pytest.raises(ValueError, match="forward_norm"):
        delan_loss(model, b, s, LossWeights(1.0, 2.0, 0.5), forward_norm="euclid")
    # a constant joint does not divide by zero
    b0 = dict(b, tau=b["tau"] * torch.tensor([1.0, 0.0, 1.0], dtype=F64))
    assert torch.isfinite(scales_of(b0).tau_var).all()


def test_typical_inertia_of_a_known_arm():
    """On an arm whose torque is mostly inertial, the estimate is the mean diagonal of H within
    a factor of 3; gravity does not inflate it (std(tau)/std(qdd) would)."""
    from delan.losses import typical_inertia
    from delan.systems import make_system

    b = data(2, B=2000)
    arm = make_system("n-link", n_dof=2)
    t = arm.terms(b["q"], b["qd"], b["qdd"])
    h = typical_inertia(b["q"], b["qd"], b["qdd"], t.tau)
    true = torch.diagonal(t.H, dim1=1, dim2=2).mean(0).numpy()
    assert ((h / true > 1 / 3) & (h / true < 3)).all(), (h, true)


def test_mass_norm_has_no_plateau_at_large_h():
    """Scaling the model's H (and so c) up: the per-joint forward loss levels off near n, the mass
    norm grows without bound - the degenerate minimum that wrecked 7-DoF training is gone."""
    from delan.dynamics import DynamicsTerms
    from delan.losses import loss_from_terms
    from delan.systems import make_system

    b = data(2, B=64)
    true = make_system("two-link").terms(b["q"], b["qd"], b["qdd"])
    b["tau"] = true.tau
    s = scales_of(b)
    w = LossWeights(0.0, 1.0, 0.0)
    got = {}
    for norm in ("joint", "mass"):
        for lam in (1.0, 1e3, 1e6):
            t = DynamicsTerms(
                lam * true.H,
                lam * true.coriolis,
                true.gravity,
                true.friction,
                true.T,
                true.V,
                lam * true.inertial,
                None,
            )
            got[norm, lam] = float(loss_from_terms(t, b, s, w, forward_norm=norm)[0])
    assert got["joint", 1.0] < 1e-20 and got["mass", 1.0] < 1e-20
    assert abs(got["joint", 1e6] - got["joint", 1e3]) < 1e-2 * got["joint", 1e3]  # plateau
    assert got["mass", 1e6] > 900 * got["mass", 1e3]  # grows like lambda


def test_weights():
    assert resolve_weights({"power": 0.3}) == LossWeights(1.0, 1.0, 0.3)
    assert resolve_weights(None, LossWeights(1, 0, 0)) == LossWeights(1, 0, 0)
    with pytest.raises(ValueError, match="unknown loss weight"):
        resolve_weights({"torque": 1.0})
    b = data(2)
    model = DeepLagrangianNetwork(2, width=8, dtype=F64)
    total, parts = delan_loss(model, b, scales_of(b), {"forward": 0.0})
    assert set(parts) == {"inverse"} and torch.allclose(total, parts["inverse"])


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


MODELS = [
    lambda: DeepLagrangianNetwork(3, width=12, friction=True, dtype=F64),
    lambda: DeepLagrangianNetwork(3, width=12, revolute=[True, False, True], shared_trunk=False, dtype=F64),
    lambda: DeepLagrangianNetwork(2, width=12, activation="tanh", revolute=[True, True], friction=True, dtype=F64),
    lambda: BlackBoxLagrangianNetwork(2, width=12, activation="tanh", revolute=[True, False], friction=True, dtype=F64),
]


@pytest.mark.parametrize("build", MODELS)
@pytest.mark.parametrize("part", ["inverse", "forward", "power"])
def test_parameter_gradients_equal_the_autograd_reference(build, part):
    torch.manual_seed(1)
    model = build()
    b = data(model.n_dof, seed=1)
    s = scales_of(b)
    w = LossWeights(**{k: float(k == part) for k in ("inverse", "forward", "power")})
    if part == "forward" and isinstance(model, BlackBoxLagrangianNetwork):
        # forward dynamics needs a convex L: make it so by a large regularisation
        model.regularisation = 1e3
    solve = getattr(model, "solve_mass_matrix", None)
    loss, _ = delan_loss(model, b, s, w)
    mine = grads(model, loss)
    t = ref.model_terms(model, b["q"], b["qd"], b["qdd"], create_graph=True)
    kw = {} if solve is None else {"solve": solve}
    loss_ref, _ = loss_from_terms(t, b, s, w, **kw)
    theirs = grads(model, loss_ref)
    assert torch.allclose(loss, loss_ref, rtol=1e-10, atol=0)
    assert mine.keys() == theirs.keys() and len(mine) >= 5
    for k in mine:
        scale = max(float(theirs[k].abs().max()), 1e-12)
        assert float((mine[k] - theirs[k]).abs().max()) <= 1e-9 * scale, k


def test_the_strong_reference_gives_the_same_training_loss():
    torch.manual_seed(2)
    model = DeepLagrangianNetwork(3, width=12, friction=True, dtype=F64)
    b = data(3)
    s = scales_of(b)
    loss, _ = delan_loss(model, b, s)
    mine = grads(model, loss)
    t = ref.model_terms(model, b["q"], b["qd"], b["qdd"], create_graph=True, split=False)
    theirs = grads(model, loss_from_terms(t, b, s)[0])
    for k in mine:
        assert torch.allclose(mine[k], theirs[k], rtol=1e-9, atol=1e-12), k


def test_feedforward_inverse_only_and_bad_batches():
    torch.manual_seed(0)
    model = FeedForwardModel(2, width=8, dtype=F64)
    b = data(2)
    s = scales_of(b)
    total, parts = delan_loss(model, b, s)
    assert set(parts) == {"inverse"}
    with pytest.raises(ValueError, match="forward"):
        delan_loss(model, b, s, LossWeights(1, 1, 0))
    structured = DeepLagrangianNetwork(2, width=8, dtype=F64)
    with pytest.raises(ValueError, match="tau"):
        delan_loss(structured, dict(b, tau=b["tau"][:, :1]), s)
    with pytest.raises(ValueError, match="qdd"):
        delan_loss(structured, {"q": b["q"], "qd": b["qd"], "tau": b["tau"]}, s)
    tuple_loss, _ = delan_loss(structured, (b["q"], b["qd"], b["qdd"], b["tau"]), s)
    assert torch.equal(tuple_loss, delan_loss(structured, b, s)[0])


@pytest.mark.parametrize("friction", [False, True])
@pytest.mark.parametrize("shared_trunk", [True, False])
def test_loss_from_prediction_equals_loss_from_terms(friction, shared_trunk):
    """The training loss of the structured model (from tau_pred and H alone) is the loss of
    its full decomposition: same value and same parameter gradients, each part."""
    from delan.losses import loss_from_prediction, loss_from_terms
    from delan.models import DeepLagrangianNetwork

    torch.manual_seed(4)
    model = DeepLagrangianNetwork(
        3, width=12, revolute=[True, False, True], friction=friction, shared_trunk=shared_trunk, dtype=torch.float64
    )
    batch = tuple(torch.randn(16, 3, dtype=torch.float64) for _ in range(4))
    scales = Normaliser.from_data(*batch)
    params = list(model.parameters())
    for weights in (
        {"inverse": 1.0, "forward": 0.0, "power": 0.0},
        {"inverse": 0.0, "forward": 1.0, "power": 0.0},
        {"inverse": 0.0, "forward": 0.0, "power": 1.0},
    ):
        tau_pred, H = model.inverse_dynamics_and_mass_matrix(*batch[:3])
        a, _ = loss_from_prediction(tau_pred, H, batch, scales, weights)
        b, _ = loss_from_terms(model.terms(*batch[:3]), batch, scales, weights)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=0)
        # allow_unused: V's output bias never matters (only dV/dq does); it may be left out of a graph
        grads_a = torch.autograd.grad(a, params, allow_unused=True)
        grads_b = torch.autograd.grad(b, params, allow_unused=True)
        for p, ga, gb in zip(params, grads_a, grads_b):
            zero = torch.zeros_like(p)
            torch.testing.assert_close(zero if ga is None else ga, zero if gb is None else gb, rtol=1e-9, atol=1e-12)
