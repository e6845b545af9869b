"""Deep Differential Networks: f(x), the exact Jacobian and the exact Hessian in one pass.

>>> import torch, ddn
>>> net = ddn.DifferentialNetwork(n_input=2, n_output=1, width=64, depth=2, activation="tanh")
>>> y, J, H = net(torch.randn(10, 2), order=2)   # (10, 1), (10, 1, 2), (10, 1, 2, 2)

The public names are those in ``__all__``; the jet algebra's helpers (``ddn.jet``,
``ddn.layers.elementwise``, ``ddn.init.init_linear``) are internals of the layers.
"""

from ddn.activations import (
    Activation,
    available_activations,
    get_activation,
    register_activation,
)
from ddn.init import INIT_METHODS
from ddn.jet import Jet
from ddn.layers import AngleFeatures, DifferentialActivation, DifferentialLinear
from ddn.network import DifferentialNetwork
from ddn.reference import reference_derivatives

__all__ = [
    "Activation",
    "AngleFeatures",
    "DifferentialActivation",
    "DifferentialLinear",
    "DifferentialNetwork",
    "INIT_METHODS",
    "Jet",
    "available_activations",
    "get_activation",
    "reference_derivatives",
    "register_activation",
]
