"""delan.compile_dynamics: a model's method through torch.compile, equal to the eager method."""

import pytest
import torch

import delan
from delan.compiled import METHODS


def test_compiled_inverse_dynamics_equals_the_eager_method():
    torch.manual_seed(0)
    model = delan.DeepLagrangianNetwork(2, width=8, revolute=[True, False], friction=True, dtype=torch.float64)
    fast = delan.compile_dynamics(model)
    q, qd, qdd = (torch.randn(64, 2, dtype=torch.float64) for _ in range(3))
    with torch.no_grad():
        torch.testing.assert_close(fast(q, qd, qdd), model.inverse_dynamics(q, qd, qdd), rtol=1e-12, atol=1e-12)
        # the compiled function reads the live parameters: a changed weight is seen
        next(model.parameters()).add_(0.1)
        torch.testing.assert_close(fast(q, qd, qdd), model.inverse_dynamics(q, qd, qdd), rtol=1e-12, atol=1e-12)


def test_compile_dynamics_names_what_it_cannot_compile():
    model = delan.DeepLagrangianNetwork(2, width=8)
    with pytest.raises(ValueError, match="method must be one of inverse_dynamics, .*got 'inverse'"):
        delan.compile_dynamics(model, "inverse")
    assert "inverse_dynamics" in METHODS and "forward_dynamics" in METHODS
    with pytest.raises(ValueError, match="Linear has no method 'energy'"):
        delan.compile_dynamics(torch.nn.Linear(2, 2), "energy")
