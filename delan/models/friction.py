"""Learnable joint friction: viscous plus smoothed Coulomb, kept non-negative.

The torque follows the one project formula :func:`delan.friction.joint_friction`; the learned
coefficients are ``softplus(raw)``, so they stay >= 0 (friction never adds energy) while the raw
parameters train freely.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from delan.friction import joint_friction


def _inverse_softplus(x: float) -> float:
    # softplus^-1(x) = log(e^x - 1), written to stay finite for small x
    return x + math.log(-math.expm1(-x))


class JointFriction(nn.Module):
    """Per-joint viscous and Coulomb friction with learnable non-negative coefficients.

    Args:
        n_dof: number of joints n.
        viscous: initial viscous coefficient (> 0) for every joint.
        coulomb: initial Coulomb torque (> 0) for every joint.
        smoothing: velocity scale of the tanh that smooths sign(qd) (fixed, not learned).
    """

    def __init__(
        self,
        n_dof: int,
        viscous: float = 0.01,
        coulomb: float = 0.01,
        smoothing: float = 0.01,
        dtype: Optional[torch.dtype] = None,
        device=None,
    ):
        super().__init__()
        if viscous <= 0 or coulomb <= 0 or smoothing <= 0:
            raise ValueError("friction viscous, coulomb and smoothing must be positive")
        kw = dict(dtype=dtype, device=device)
        self.raw_viscous = nn.Parameter(torch.full((n_dof,), _inverse_softplus(viscous), **kw))
        self.raw_coulomb = nn.Parameter(torch.full((n_dof,), _inverse_softplus(coulomb), **kw))
        self.smoothing = float(smoothing)

    def coefficients(self) -> Tuple[Tensor, Tensor]:
        """(viscous (n,), coulomb (n,)), both >= 0."""
        return F.softplus(self.raw_viscous), F.softplus(self.raw_coulomb)

    def forward(self, qd: Tensor) -> Tensor:
        """Friction torques f (B, n) for joint velocities qd (B, n)."""
        viscous, coulomb = self.coefficients()
        return joint_friction(qd, viscous, coulomb, self.smoothing)

    def extra_repr(self) -> str:
        return f"n_dof={self.raw_viscous.shape[0]}, smoothing={self.smoothing:g}"
