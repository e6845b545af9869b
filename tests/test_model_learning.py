"""It learns: a small structured DeLaN recovers the inertial, Coriolis and gravity torques of a
two-link arm from a few hundred (q, qd, qdd, tau) samples, without ever seeing that split."""

import math

import torch

from delan.losses import LossWeights, Normaliser, delan_loss
from delan.models import DeepLagrangianNetwork, FeedForwardModel

F64 = torch.float64


def two_link():
    from delan.systems import make_system

    return make_system("two-link")


def samples(arm, n, seed):
    g = torch.Generator().manual_seed(seed)
    q = (2 * torch.rand(n, 2, dtype=F64, generator=g) - 1) * math.pi
    qd = (2 * torch.rand(n, 2, dtype=F64, generator=g) - 1) * 3.0
    qdd = (2 * torch.rand(n, 2, dtype=F64, generator=g) - 1) * 6.0
    return q, qd, qdd, arm.terms(q, qd, qdd)


def nmse(pred, true):
    """Mean squared error norm relative to the mean squared norm of the truth."""
    return float(((pred - true) ** 2).sum(-1).mean() / (true**2).sum(-1).mean())


def train(model, batch, scales, steps, lr, weights=None):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr / 10)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss, _ = delan_loss(model, batch, scales, weights)
        loss.backward()
        opt.step()
        sched.step()
    return float(loss.detach())


def test_structured_delan_recovers_the_decomposition():
    arm = two_link()
    q, qd, qdd, truth = samples(arm, 300, seed=0)
    batch = (q, qd, qdd, truth.tau)
    scales = Normaliser.from_data(*batch)
    torch.manual_seed(0)
    model = DeepLagrangianNetwork(2, width=64, depth=2, revolute=[True, True], dtype=F64)
    train(model, batch, scales, steps=900, lr=3e-3, weights=LossWeights(1.0, 1.0, 0.0))

    tq, tqd, tqdd, test = samples(arm, 200, seed=1)
    with torch.no_grad():
        got = model.terms(tq, tqd, tqdd)
    errors = {
        name: nmse(getattr(got, name), getattr(test, name)) for name in ("tau", "inertial", "coriolis", "gravity")
    }
    errors["H"] = nmse(got.H.flatten(1), test.H.flatten(1))
    assert errors["tau"] < 5e-3, errors
    assert errors["inertial"] < 1e-2 and errors["H"] < 1e-2, errors
    assert errors["coriolis"] < 5e-2, errors
    assert errors["gravity"] < 5e-3, errors
    # and it simulates: forward dynamics on held-out states recovers qdd
    with torch.no_grad():
        qdd_pred = model.forward_dynamics(tq, tqd, test.tau)
    # (looser: H^-1 amplifies the error where the arm's mass matrix is ill-conditioned)
    assert nmse(qdd_pred, tqdd) < 0.2


def test_feedforward_baseline_learns_torques():
    arm = two_link()
    q, qd, qdd, truth = samples(arm, 300, seed=0)
    batch = (q, qd, qdd, truth.tau)
    torch.manual_seed(0)
    model = FeedForwardModel(2, width=64, depth=2, dtype=F64)
    first = train(model, batch, Normaliser.from_data(*batch), steps=1, lr=3e-3)
    last = train(model, batch, Normaliser.from_data(*batch), steps=300, lr=3e-3)
    assert last < 0.3 * first
