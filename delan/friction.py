"""Joint friction: viscous plus smoothed Coulomb, the one formula shared by systems and models.

    f_i(qd) = viscous_i * qd_i + coulomb_i * tanh(qd_i / smoothing)

The tanh replaces sign(qd) so the torque stays differentiable and forward simulation stays
well-posed near zero velocity; ``smoothing`` (rad/s or m/s) is the velocity at which Coulomb
friction reaches ~76% of its full value.
"""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

Number = Union[float, Tensor]


def joint_friction(qd: Tensor, viscous: Number, coulomb: Number, smoothing: float = 0.01) -> Tensor:
    """Friction torques (B, n) opposing motion, for per-joint coefficients (n,) or scalars.

    Args:
        qd: joint velocities (B, n).
        viscous: non-negative viscous coefficients [N m s / rad], (n,) or scalar.
        coulomb: non-negative Coulomb torques [N m], (n,) or scalar.
        smoothing: velocity scale of the tanh that smooths sign(qd).
    Returns:
        f (B, n), the torque the joints lose to friction (tau = ... + f).
    """
    return viscous * qd + coulomb * torch.tanh(qd / smoothing)
