import pytest
import torch

import ddn
from ddn.activations import PIECEWISE_LINEAR

REQUIRED = {"linear", "relu", "softplus", "tanh", "sigmoid", "cos", "sin", "quad", "cubic", "elu", "silu"}


def test_registry_has_required_activations():
    assert REQUIRED <= set(ddn.available_activations())


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError) as err:
        ddn.get_activation("swishy")
    msg = str(err.value)
    assert "swishy" in msg
    for name in REQUIRED:
        assert name in msg


def test_bad_options_are_reported():
    with pytest.raises(ValueError, match="beta"):
        ddn.get_activation("softplus", beta=-1.0)
    with pytest.raises(ValueError, match="tanh"):
        ddn.get_activation("tanh", beta=2.0)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_derivatives_match_autograd(name):
    act = ddn.get_activation(name)
    a = torch.linspace(-3.0, 3.0, 301, dtype=torch.float64)
    a = a[a.abs() > 1e-3]  # away from the kink of relu-like functions
    g, dg, d2g = act(a, 2)
    ref = a.clone().requires_grad_(True)
    y = act.g(ref)
    (d1,) = torch.autograd.grad(y.sum(), ref, create_graph=True)
    if d1.requires_grad:
        (d2,) = torch.autograd.grad(d1.sum(), ref, allow_unused=True)
    else:  # constant derivative (linear)
        d2 = None
    d2 = torch.zeros_like(a) if d2 is None else d2
    torch.testing.assert_close(g, y.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dg, d1.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d2g, d2, rtol=1e-12, atol=1e-12)
    # the separate functions agree with the fused call
    torch.testing.assert_close(act.dg(a), dg)
    torch.testing.assert_close(act.d2g(a), d2g)


def test_softplus_beta_changes_curvature():
    a = torch.tensor([0.3], dtype=torch.float64)
    _, _, c1 = ddn.get_activation("softplus")(a, 2)
    _, _, c4 = ddn.get_activation("softplus", beta=4.0)(a, 2)
    assert not torch.allclose(c1, c4)


def test_softplus_does_not_overflow():
    a = torch.tensor([-1000.0, 0.0, 1000.0])
    g, dg, d2g = ddn.get_activation("softplus")(a, 2)
    assert torch.isfinite(g).all() and torch.isfinite(dg).all() and torch.isfinite(d2g).all()
    assert g[2] == 1000.0


def test_user_registered_activation_is_used_by_networks():
    name = "test_cube"
    if name not in ddn.available_activations():
        ddn.register_activation(name, lambda a: a**3, lambda a: 3 * a**2, lambda a: 6 * a)
    with pytest.raises(ValueError, match="already registered"):
        ddn.register_activation(name, lambda a: a, lambda a: a, lambda a: a)
    net = ddn.DifferentialNetwork(2, 1, width=4, depth=1, activation=name, dtype=torch.float64)
    x = torch.randn(3, 2, dtype=torch.float64)
    ours = net(x, order=2)
    ref = ddn.reference_derivatives(lambda xi: net(xi), x, 2)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_piecewise_linear_set_is_registered():
    assert PIECEWISE_LINEAR <= set(ddn.available_activations())
