"""Compiled dynamics: a model's method through ``torch.compile``, asked for by name.

``model.inverse_dynamics(q, qd, qdd)`` is plain torch: a few dozen kernels, most of them
elementwise passes over (B, width) tensors (activations, their derivatives, tangents and
cotangents). At large batches on a GPU those passes, not the matrix products, set the pace;
``torch.compile`` fuses them into a few kernels. The result is a separate callable the user asks
for, so the model's own methods stay plain torch (traceable, exportable, differentiable in any
mode).

    fast = delan.compile_dynamics(model)             # inverse dynamics
    tau = fast(q, qd, qdd)                           # the first call compiles (seconds to minutes)

The compiled function computes the same formulas; fused kernels may sum in another order, so it
agrees with the eager method to rounding (tests/test_compiled.py, tests/test_cuda.py).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

METHODS = ("inverse_dynamics", "forward_dynamics", "terms", "mass_matrix", "coriolis", "gravity", "energy")


def compile_dynamics(
    model: nn.Module, method: str = "inverse_dynamics", *, mode: Optional[str] = None, dynamic: bool = False
) -> Callable:
    """``torch.compile(getattr(model, method), fullgraph=True)``: one compiled method of a model.

    Args:
        model: a learned model or a system (any :class:`delan.Dynamics`).
        method: one of :data:`METHODS`.
        mode: torch.compile's mode (None = its default; "max-autotune-no-cudagraphs" also tunes
            the matrix products, at a longer compile).
        dynamic: compile for any batch size (False: one compilation per batch size seen, the
            faster code).
    Returns:
        A callable with the method's arguments and results. It reads the model's live
        parameters, so training the model on does not make it stale.
    Raises:
        ValueError: ``method`` is not one of :data:`METHODS` or the model has no such method.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    fn = getattr(model, method, None)
    if fn is None:
        raise ValueError(f"{type(model).__name__} has no method {method!r}")
    return torch.compile(fn, fullgraph=True, dynamic=dynamic, mode=mode)
