"""The one weight-initialisation routine of the project."""

from __future__ import annotations

import torch
from torch import Tensor

INIT_METHODS = ("xavier_normal", "xavier_uniform", "orthogonal", "sparse", "kaiming_normal")


@torch.no_grad()
def init_linear(
    weight: Tensor,
    bias: Tensor,
    method: str = "xavier_normal",
    gain: float = 1.0,
    bias_init: float = 0.0,
    sparsity: float = 0.2,
) -> None:
    """Initialise one affine layer in place.

    Args:
        weight: (out, in) weight matrix.
        bias: (out,) bias vector.
        method: one of ``INIT_METHODS``.
        gain: scale passed to the torch initialiser (std multiplier for ``sparse``).
        bias_init: constant every bias entry starts at.
        sparsity: fraction of zero entries per column, for ``sparse``.
    """
    if method == "xavier_normal":
        torch.nn.init.xavier_normal_(weight, gain=gain)
    elif method == "xavier_uniform":
        torch.nn.init.xavier_uniform_(weight, gain=gain)
    elif method == "orthogonal":
        torch.nn.init.orthogonal_(weight, gain=gain)
    elif method == "sparse":
        torch.nn.init.sparse_(weight, sparsity=sparsity, std=0.01 * gain)
    elif method == "kaiming_normal":
        torch.nn.init.kaiming_normal_(weight, nonlinearity="linear")
        weight.mul_(gain)
    else:
        raise ValueError(f"unknown init method {method!r}; valid: {', '.join(INIT_METHODS)}")
    bias.fill_(bias_init)
