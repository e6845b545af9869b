"""The NumPy single-sample path of the structured DeLaN (the control-loop case)."""
import itertools

import pytest
import torch

from delan.models import DeepLagrangianNetwork
from delan.models import single_sample

OPTIONS = [dict(revolute=r, friction=f, depth=d) for r, f, d in itertools.product([False, True], [False, True], [1, 2, 3])]


def make(n, dtype=torch.float64, **options):
    revolute = [i % 2 == 0 for i in range(n)] if options.pop("revolute", False) else None
    torch.manual_seed(n)
    return DeepLagrangianNetwork(n, width=9, revolute=revolute, dtype=dtype, **options)


@pytest.mark.parametrize("n", [1, 2, 7])
@pytest.mark.parametrize("options", OPTIONS)
def test_numpy_path_equals_torch_path(n, options):
    model = make(n, **options)
    assert model._single_sample is not None
    q, qd, qdd = (torch.randn(1, n, dtype=torch.float64) for _ in range(3))
    with torch.inference_mode():
        assert single_sample.applicable(q, qd, qdd)
        fast = model.inverse_dynamics(q, qd, qdd)
        lean = model._inverse_dynamics_lean(q, qd, qdd)
    assert fast.shape == (1, n) and fast.dtype == torch.float64
    torch.testing.assert_close(fast, lean, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(model.inverse_dynamics(q[0], qd[0], qdd[0]), lean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.inverse_dynamics(q, qd, qdd), lean, rtol=1e-12, atol=1e-12)


def test_float32_and_taken_only_where_nothing_can_notice():
    model = make(3, dtype=torch.float32)
    q, qd, qdd = (torch.randn(1, 3) for _ in range(3))
    with torch.inference_mode():
        fast = model.inverse_dynamics(q, qd, qdd)
        lean = model._inverse_dynamics_lean(q, qd, qdd)
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, lean, rtol=1e-5, atol=1e-6)
    # gradients on, inputs requiring grad, batches, torch.func: all stay in torch
    assert model.inverse_dynamics(q, qd, qdd).requires_grad
    with torch.no_grad():
        assert not single_sample.applicable(q.requires_grad_(True), qd, qdd)
        assert not single_sample.applicable(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3))
    out = torch.func.vmap(lambda a, b, c: model.inverse_dynamics(a, b, c))(q, qd, qdd)
    torch.testing.assert_close(out[:, 0], lean.detach(), rtol=1e-5, atol=1e-6)


def test_sees_parameter_updates_and_moves():
    model = make(2)
    q, qd, qdd = (torch.randn(1, 2, dtype=torch.float64) for _ in range(3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        before = model.inverse_dynamics(q, qd, qdd)
    model.inverse_dynamics(torch.randn(8, 2, dtype=torch.float64), qd, qdd).square().sum().backward()
    opt.step()  # in place: the NumPy views see it
    with torch.no_grad():
        after = model.inverse_dynamics(q, qd, qdd)
        assert not torch.equal(before, after)
        torch.testing.assert_close(after, model._inverse_dynamics_lean(q, qd, qdd), rtol=1e-12, atol=1e-12)
    model.float()  # new storage: the views are taken again
    with torch.no_grad():
        torch.testing.assert_close(model.inverse_dynamics(q.float(), qd.float(), qdd.float()),
                                   model._inverse_dynamics_lean(q.float(), qd.float(), qdd.float()))
    # new parameter objects (as functional_call or load_state_dict(assign=True) make) are seen too
    other = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    model.load_state_dict(other, assign=True)
    args = (q.float(), qd.float(), qdd.float())
    with torch.no_grad():
        torch.testing.assert_close(model.inverse_dynamics(*args), model._inverse_dynamics_lean(*args))


def test_not_used_for_other_activations_or_separate_networks():
    assert DeepLagrangianNetwork(2, activation="tanh")._single_sample is None
    assert DeepLagrangianNetwork(2, shared_trunk=False)._single_sample is None
