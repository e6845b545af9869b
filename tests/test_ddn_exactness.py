"""Closed-form derivatives against torch.func in float64, over random architectures."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ddn

ACTIVATIONS = sorted(ddn.available_activations())
DT = torch.float64


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)


def make_net(n, m, width, depth, act, output_activation="linear", seed=0):
    torch.manual_seed(seed)
    return ddn.DifferentialNetwork(
        n, m, width=width, depth=depth, activation=act, output_activation=output_activation, dtype=DT
    )


architectures = st.fixed_dictionaries(
    {
        "n": st.integers(1, 8),
        "m": st.integers(1, 3),
        "width": st.sampled_from([3, 8, 17, 32]),
        "depth": st.integers(1, 4),
        "act": st.sampled_from(ACTIVATIONS),
        "mode": st.sampled_from(["auto", "forward", "reverse"]),
        "batch": st.integers(1, 6),
        "seed": st.integers(0, 2**16),
    }
)


@settings(max_examples=60, deadline=None)
@given(architectures)
def test_order_1_and_2_match_torch_func(arch):
    net = make_net(arch["n"], arch["m"], arch["width"], arch["depth"], arch["act"], seed=arch["seed"])
    x = torch.randn(arch["batch"], arch["n"], dtype=DT)
    y_ref, J_ref, H_ref = ddn.reference_derivatives(lambda xi: net(xi), x, 2)
    y1, J1 = net(x, order=1, mode=arch["mode"])
    y2, J2, H2 = net(x, order=2, mode=arch["mode"])
    assert J1.shape == (arch["batch"], arch["m"], arch["n"])
    assert H2.shape == (arch["batch"], arch["m"], arch["n"], arch["n"])
    for ours, ref in [(y1, y_ref), (J1, J_ref), (y2, y_ref), (J2, J_ref), (H2, H_ref)]:
        assert rel_err(ours, ref) <= 1e-10
    torch.testing.assert_close(H2, H2.transpose(-1, -2), rtol=0, atol=0)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_every_activation_and_output_activation(act, mode):
    net = make_net(3, 2, 9, 2, act, output_activation="tanh", seed=1)
    x = torch.randn(4, 3, dtype=DT)
    ref = ddn.reference_derivatives(lambda xi: net(xi), x, 2)
    for ours, r in zip(net(x, order=2, mode=mode), ref):
        assert rel_err(ours, r) <= 1e-10


@pytest.mark.parametrize("depth", [0, 1])
def test_shallow_networks(depth):
    net = make_net(4, 2, 5, depth, "tanh")
    x = torch.randn(3, 4, dtype=DT)
    ref = ddn.reference_derivatives(lambda xi: net(xi), x, 2)
    for mode in ["forward", "reverse"]:
        for ours, r in zip(net(x, order=2, mode=mode), ref):
            assert rel_err(ours, r) <= 1e-10


@pytest.mark.parametrize("act", ["softplus", "tanh", "cos", "cubic", "elu"])
@pytest.mark.parametrize("mode", ["forward", "reverse"])
@pytest.mark.parametrize("order", [1, 2])
def test_parameter_gradients_through_derivatives(act, mode, order):
    """Training on derivative targets: d(loss(J, H))/d(params) equals autograd through torch.func."""
    net = make_net(3, 2, 7, 2, act, seed=3)
    x = torch.randn(5, 3, dtype=DT)
    params = list(net.parameters())

    def loss_of(outs):
        loss = (outs[1] ** 2).sum() + outs[0].sin().sum()
        if order == 2:
            loss = loss + (outs[2] ** 3).sum()
        return loss

    ours = torch.autograd.grad(loss_of(net(x, order=order, mode=mode)), params)
    ref = torch.autograd.grad(loss_of(ddn.reference_derivatives(lambda xi: net(xi), x, order)), params)
    for a, b in zip(ours, ref):
        assert rel_err(a, b) <= 1e-10


@pytest.mark.parametrize("periodic", [[True], [True, False, True], [False, False]])
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_feature_map_chained_in_front(periodic, mode):
    n = len(periodic)
    feat = ddn.AngleFeatures(periodic)
    net = make_net(feat.n_features, 2, 6, 2, "softplus", output_activation="sigmoid")

    def f(xi):
        return net(feat(ddn.Jet.input(xi.unsqueeze(0), 0)).value)[0]

    x = torch.randn(4, n, dtype=DT)
    ref = ddn.reference_derivatives(f, x, 2)
    for order in (1, 2):
        ours = net(feat(ddn.Jet.input(x, order)), order=order, mode=mode)
        for a, b in zip(ours, ref[: order + 1]):
            assert rel_err(a, b) <= 1e-10


def test_feature_map_is_periodic():
    feat = ddn.AngleFeatures([True, False])
    net = make_net(feat.n_features, 1, 6, 2, "tanh")
    x = torch.randn(4, 2, dtype=DT)
    shifted = x + torch.tensor([2 * torch.pi, 0.0], dtype=DT)
    a = net(feat(ddn.Jet.input(x, 2)), order=2)
    b = net(feat(ddn.Jet.input(shifted, 2)), order=2)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)


def test_jets_compose_layer_by_layer():
    """Layers used on their own (a trunk and two heads) give the same derivatives as torch.func."""
    torch.manual_seed(0)
    trunk = [ddn.DifferentialLinear(2, 8, dtype=DT), ddn.DifferentialActivation("tanh")]
    head_a = ddn.DifferentialLinear(8, 3, dtype=DT)
    head_b = ddn.DifferentialLinear(8, 1, dtype=DT)

    def run(jet):
        for layer in trunk:
            jet = layer(jet)
        return head_a(jet), head_b(jet)

    x = torch.randn(5, 2, dtype=DT)
    a, b = run(ddn.Jet.input(x, 2))
    for out, idx in [(a, slice(0, 3)), (b, slice(3, 4))]:
        ref = ddn.reference_derivatives(
            lambda xi, idx=idx: torch.cat([o.value for o in run(ddn.Jet.input(xi.unsqueeze(0), 0))], -1)[0, idx],
            x,
            2,
        )
        torch.testing.assert_close(out.value, ref[0])
        torch.testing.assert_close(out.jacobian(), ref[1])
        torch.testing.assert_close(out.hessian(), ref[2])


def test_jvp_vjp_matches_full_jacobian():
    net = make_net(4, 3, 10, 3, "silu", output_activation="tanh")
    x = torch.randn(6, 4, dtype=DT)
    v = torch.randn(2, 6, 4, dtype=DT)
    u = torch.randn(5, 6, 3, dtype=DT)
    _, J = ddn.reference_derivatives(lambda xi: net(xi), x, 1)
    y, ydot, pullback = net.jvp_vjp(x, v)
    torch.testing.assert_close(ydot, torch.einsum("bmn,kbn->kbm", J, v))
    torch.testing.assert_close(pullback(u), torch.einsum("bmn,rbm->rbn", J, u))
