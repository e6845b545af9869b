"""Network API: shapes, single samples, dtypes, init, errors, torch.func transforms, training."""

import subprocess
import sys
import textwrap

import pytest
import torch

import ddn


def test_shapes_and_single_sample():
    net = ddn.DifferentialNetwork(3, 2, width=8, depth=2)
    x = torch.randn(5, 3)
    y, J, H = net(x, order=2)
    assert y.shape == (5, 2) and J.shape == (5, 2, 3) and H.shape == (5, 2, 3, 3)
    y1, J1, H1 = net(x[0], order=2)
    assert y1.shape == (2,) and J1.shape == (2, 3) and H1.shape == (2, 3, 3)
    torch.testing.assert_close(y1, y[0])
    torch.testing.assert_close(H1, H[0])
    assert net(x).shape == (5, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_parameters(dtype):
    net = ddn.DifferentialNetwork(2, 1, width=4, depth=1, dtype=dtype)
    y, J, H = net(torch.randn(3, 2, dtype=dtype), order=2)
    assert y.dtype == J.dtype == H.dtype == dtype
    net64 = ddn.DifferentialNetwork(2, 1, width=4, depth=1).double()
    assert net64(torch.randn(3, 2, dtype=torch.float64), order=2)[2].dtype == torch.float64


def test_bad_inputs():
    net = ddn.DifferentialNetwork(3, 1, width=4, depth=1)
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        net(torch.randn(4, 2))
    with pytest.raises(ValueError, match="order"):
        net(torch.randn(4, 3), order=3)
    with pytest.raises(ValueError, match="mode"):
        net(torch.randn(4, 3), order=1, mode="sideways")
    with pytest.raises(TypeError):
        net([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="width"):
        ddn.DifferentialNetwork(3, 1, width=0)


@pytest.mark.parametrize("method", ddn.INIT_METHODS)
def test_init_methods(method):
    torch.manual_seed(0)
    net = ddn.DifferentialNetwork(4, 2, width=16, depth=2, init=method, gain=2.0, bias_init=0.1)
    for layer in net.hidden:
        assert torch.all(layer.bias == 0.1)
        assert layer.weight.abs().sum() > 0
    if method == "orthogonal":
        w = net.hidden[1].weight
        torch.testing.assert_close(w @ w.T, 4.0 * torch.eye(16), atol=1e-4, rtol=1e-4)
    if method == "sparse":
        assert (net.hidden[1].weight == 0).any()
    with pytest.raises(ValueError, match="xavier_normal"):
        ddn.DifferentialNetwork(4, 2, init="lecun")


def test_works_under_vmap_and_grad():
    net = ddn.DifferentialNetwork(3, 2, width=8, depth=2, activation="tanh").double()
    x = torch.randn(4, 3, dtype=torch.float64)
    batched = net(x, order=2)
    mapped = torch.func.vmap(lambda xi: net(xi, order=2))(x)
    for a, b in zip(batched, mapped):
        torch.testing.assert_close(a, b)
    # the gradient of the Hessian's trace w.r.t. x equals finite differences of it
    f = lambda xi: net(xi, order=2)[2].diagonal(dim1=-2, dim2=-1).sum()  # noqa: E731
    g = torch.func.grad(f)(x[0])
    eps = 1e-6
    fd = torch.stack([(f(x[0] + eps * e) - f(x[0] - eps * e)) / (2 * eps) for e in torch.eye(3, dtype=x.dtype)])
    torch.testing.assert_close(g, fd, rtol=1e-5, atol=1e-7)


def test_training_on_derivative_targets_learns_the_derivative():
    """Fit only df/dx of sin(x): the learned derivative must approach cos(x)."""
    torch.manual_seed(0)
    net = ddn.DifferentialNetwork(1, 1, width=32, depth=2, activation="tanh")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.linspace(-3, 3, 200).unsqueeze(-1)
    target = torch.cos(x)

    def derivative_error():
        return ((net(x, order=1)[1][:, 0] - target) ** 2).mean()

    before = derivative_error().item()
    for _ in range(300):
        opt.zero_grad()
        loss = derivative_error()
        loss.backward()
        opt.step()
    after = derivative_error().item()
    assert after < 1e-3 < before


def test_memory_order_2_is_linear_in_width():
    """Order 2 at B=10,000, width 128, depth 2, n=2 with backward stays well under 2 GB.

    (A per-sample W x W formulation would need O(B W^3).) Peak RSS of a fresh process.
    """
    code = textwrap.dedent(
        """
        import resource, torch, ddn
        torch.set_num_threads(1)
        net = ddn.DifferentialNetwork(2, 1, width=128, depth=2, activation="tanh")
        x = torch.randn(10000, 2)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for mode in ("forward", "reverse"):
            y, J, H = net(x, order=2, mode=mode)
            (y.sum() + J.sum() + H.sum()).backward()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((peak - base) / 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    extra_mb = float(out.stdout.strip().splitlines()[-1])
    assert extra_mb < 1024, f"order-2 pass used {extra_mb:.0f} MB"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_cuda_matches_cpu_reference(mode):
    net = ddn.DifferentialNetwork(3, 2, width=16, depth=2, activation="softplus", dtype=torch.float64)
    x = torch.randn(8, 3, dtype=torch.float64)
    ref = ddn.reference_derivatives(lambda xi: net(xi), x, 2)
    net_cuda = net.to("cuda")
    outs = net_cuda(x.to("cuda"), order=2, mode=mode)
    for out, r in zip(outs, ref):
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
def test_fused_backward_kernels_work_under_torch_func(activation):
    """Reverse-mode order 1 uses torch's fused u * g'(a) kernels for these; vmap and grad of the
    Jacobian must still be right."""
    net = ddn.DifferentialNetwork(3, 1, width=8, depth=2, activation=activation).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    J = net(x, order=1, mode="reverse")[1]
    torch.testing.assert_close(torch.func.vmap(lambda xi: net(xi, order=1, mode="reverse")[1])(x), J)
    torch.testing.assert_close(J, net(x, order=1, mode="forward")[1])
    f = lambda xi: net(xi, order=1, mode="reverse")[1].sum()  # noqa: E731
    g = torch.func.grad(f)(x[0])
    ref = torch.func.grad(lambda xi: net(xi, order=1, mode="forward")[1].sum())(x[0])
    torch.testing.assert_close(g, ref)
