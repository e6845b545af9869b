"""Deep Differential Networks: f(x), the exact Jacobian and the exact Hessian in one pass.

>>> import torch, ddn
>>> net = ddn.DifferentialNetwork(n_input=2, n_output=1, width=64, depth=2, activation="tanh")
>>> y, J, H = net(torch.randn(10, 2), order=2)   # (10, 1), (10, 1, 2), (10, 1, 2, 2)
"""
from ddn.activations import (
    Activation,
    available_activations,
    get_activation,
    register_activation,
)
from ddn.init import INIT_METHODS, init_linear
from ddn.jet import Jet, unpack_symmetric
from ddn.layers import AngleFeatures, DifferentialActivation, DifferentialLinear, elementwise
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
    "elementwise",
    "get_activation",
    "init_linear",
    "reference_derivatives",
    "register_activation",
    "unpack_symmetric",
]
