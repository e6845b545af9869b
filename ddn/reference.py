"""Reference derivatives through torch.func: the yardstick for tests and benchmarks.

These use only the network's plain forward pass (order 0) and let torch.func differentiate it,
so they share no derivative code with the closed-form paths they check.
"""

from __future__ import annotations

from typing import Callable, Tuple

from torch import Tensor
from torch.func import hessian, jacfwd, jacrev, vmap


def reference_derivatives(f: Callable[[Tensor], Tensor], x: Tensor, order: int = 2) -> Tuple[Tensor, ...]:
    """Value, Jacobian and Hessian of ``f`` at each row of x by torch.func.

    Args:
        f: maps one sample (n,) to (m,) — e.g. ``lambda xi: net(xi)`` for a DifferentialNetwork.
        x: (B, n).
        order: 1 -> (y, J); 2 -> (y, J, H).
    Returns:
        y (B, m), J (B, m, n) by ``vmap(jacrev)``, and H (B, m, n, n) by ``vmap(hessian)``
        (forward-over-reverse).
    """
    y = vmap(f)(x)
    J = vmap(jacrev(f))(x)
    if order == 1:
        return y, J
    return y, J, vmap(hessian(f))(x)


def reference_jacobian_forward(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """J (B, m, n) by forward mode, ``vmap(jacfwd)``."""
    return vmap(jacfwd(f))(x)
